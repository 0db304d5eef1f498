"""The service's Prometheus metrics, with ``prometheus_client``.

One process: a registry per app, with the standard process and platform collectors. Several worker
processes (``--workers``): ``prometheus_client``'s multiprocess mode. The parent sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; every worker writes its samples there and any
worker's ``/metrics`` aggregates all of them. Process metrics then come per worker (label ``pid``),
refreshed every few seconds, because the standard process collector only sees its own process.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
PREFIX = "ipex_resnet_"


def multiprocess_dir() -> str | None:
    return (
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        or os.environ.get(
            "prometheus_multiproc_dir"  # noqa: SIM112 - the lower-case name prometheus_client still reads
        )
        or None
    )


class ServiceMetrics:
    """The series the HTTP service exports. Their names are a contract with dashboards and alerts: keep them."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        self.registry = CollectorRegistry()
        # declared in this order, which is the order /metrics lists them in
        self._declare_work(self.registry)
        self._declare_admission(self.registry)
        self._declare_model(self.registry)
        self._declare_process(self.registry)

    def _declare_work(self, r: CollectorRegistry) -> None:
        """Requests answered and their latency; the micro-batches and the images in them."""
        p = PREFIX
        self.requests = Counter(
            p + "requests",
            "HTTP requests answered, by endpoint and status (499: the client disconnected first).",
            ("endpoint", "status"),
            registry=r,
        )
        self.latency = Histogram(
            p + "request_duration_seconds",
            "Time from request start to response, by endpoint.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            p + "queue_wait_seconds",
            "Time an image waited in the batching queue before inference started.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            p + "inference_seconds", "Model time per micro-batch.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(p + "batch_size", "Images per micro-batch.", buckets=BATCH_BUCKETS, registry=r)
        self.images = Counter(p + "images", "Images classified.", registry=r)
        self.failed_batches = Counter(p + "failed_batches", "Micro-batches whose inference raised.", registry=r)

    def _declare_admission(self, r: CollectorRegistry) -> None:
        """Refusals, connections, requests in flight, buffered bodies, queue depth, readiness."""
        p = PREFIX
        self.rejected = Counter(
            p + "rejected", "Requests refused before inference, by reason.", ("reason",), registry=r
        )
        self.connections_refused = Counter(
            p + "connections_refused",
            "Connections closed by a guard, by reason (too_many_connections, header_timeout).",
            ("reason",),
            registry=r,
        )
        self.queue_depth = Gauge(
            p + "queue_depth", "Images waiting for a micro-batch now.", registry=r, multiprocess_mode="livesum"
        )
        self.in_flight = Gauge(
            p + "requests_in_flight",
            "Requests admitted (body received) and not yet answered.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.buffered_bytes = Gauge(
            p + "buffered_body_bytes",
            "Request-body bytes held now (reserved from the --max-buffered-bytes budget).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.open_connections = Gauge(
            p + "open_connections", "Open HTTP connections.", registry=r, multiprocess_mode="livesum"
        )
        self.ready = Gauge(
            p + "ready",
            "1 when the model is loaded and warmed up and inference makes progress "
            "(with several workers: the least ready one).",
            registry=r,
            multiprocess_mode="livemin",
        )

    def _declare_model(self, r: CollectorRegistry) -> None:
        """The result cache and the model being served."""
        p = PREFIX
        self.result_cache = Counter(
            p + "result_cache_events",
            "Result cache lookups and evictions, by event (hit, miss, eviction); only with --result-cache.",
            ("event",),
            registry=r,
        )
        self.result_cache_entries = Gauge(
            p + "result_cache_entries", "Results held in the result cache now.", registry=r, multiprocess_mode="livesum"
        )
        self.info = Gauge(
            p + "model_info",
            "The model being served (value is always 1).",
            ("model", "backend", "precision"),
            registry=r,
            multiprocess_mode="livemax",
        )

    def _declare_process(self, r: CollectorRegistry) -> None:
        """Process metrics: per worker (multiprocess mode), or the standard collectors."""
        p = PREFIX
        if self.multiprocess:
            self.workers = Gauge(p + "workers", "Worker processes alive.", registry=r, multiprocess_mode="livesum")
            self.workers.set(1)
            self.worker_rss = Gauge(
                p + "worker_resident_memory_bytes",
                "Resident memory of each worker.",
                registry=r,
                multiprocess_mode="liveall",
            )
            self.worker_cpu = Gauge(
                p + "worker_cpu_seconds",
                "CPU time (user + system) of each worker.",
                registry=r,
                multiprocess_mode="liveall",
            )
            self.worker_fds = Gauge(
                p + "worker_open_fds", "Open file descriptors of each worker.", registry=r, multiprocess_mode="liveall"
            )
        else:
            from prometheus_client import PlatformCollector, ProcessCollector

            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    def refresh_process(self) -> None:
        """Copy this process's standard process metrics into the per-worker gauges (multiprocess mode)."""
        if not self.multiprocess:
            return
        from prometheus_client import ProcessCollector

        values = {s.name: s.value for fam in ProcessCollector(registry=None).collect() for s in fam.samples}
        if "process_resident_memory_bytes" in values:
            self.worker_rss.set(values["process_resident_memory_bytes"])
        if "process_cpu_seconds_total" in values:
            self.worker_cpu.set(values["process_cpu_seconds_total"])
        if "process_open_fds" in values:
            self.worker_fds.set(values["process_open_fds"])

    def render(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            self.refresh_process()
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP response by route and status and times it (pure ASGI, no buffering)."""

    def __init__(self, app, metrics: ServiceMetrics, routes):
        self.app, self.metrics, self.routes = app, metrics, routes
        self.state = app.state

    def _endpoint(self, scope) -> str:
        from starlette.routing import Match

        for r in self.routes:
            if r.matches(scope)[0] != Match.NONE:
                return r.path
        return "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        status = {"code": 500}
        endpoint = self._endpoint(scope)

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            m = self.metrics
            m.requests.labels(endpoint, str(status["code"])).inc()
            m.latency.labels(endpoint).observe(time.monotonic() - start)


__all__ = ["MetricsMiddleware", "CONTENT_TYPE", "ServiceMetrics", "multiprocess_dir"]
