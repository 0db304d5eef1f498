"""One server process's :class:`Service`, made of its parts: :mod:`.lifecycle` (load and warm up the
model, start the micro-batcher, the ready/draining/stopping flags), :mod:`.health` (liveness, readiness,
acceptance), :mod:`.admission` (requests in flight), :mod:`.pipeline` (what an inference request goes
through), :mod:`.rendering` (errors -> responses, as the app's exception handlers), the body budget
(:mod:`.budget`), the connection limits (:mod:`.connections`) and the metrics (:mod:`.metrics`). The
routes that use them are in :mod:`.app` and :mod:`.oip`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from ipex_resnet.core.result_cache import ResultCache
from ipex_resnet.serve.admission import Admission
from ipex_resnet.serve.budget import BodyBudget
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.connections import ConnectionStats
from ipex_resnet.serve.health import Health
from ipex_resnet.serve.lifecycle import Lifecycle
from ipex_resnet.serve.metrics import ServiceMetrics
from ipex_resnet.serve.pipeline import Pipeline
from ipex_resnet.serve.rendering import ErrorRenderer

if TYPE_CHECKING:
    from ipex_resnet.core.classifier import Classifier


def _result_cache(cfg: ServeConfig, metrics: ServiceMetrics) -> ResultCache | None:
    """The opt-in result cache (``--result-cache``), its hits, misses and evictions counted in ``metrics``."""
    if cfg.result_cache == "off":
        return None
    cache = ResultCache(cfg.result_cache, max_entries=cfg.result_cache_size, max_bytes=cfg.result_cache_bytes)
    counter = metrics.result_cache
    cache.listeners.append(lambda event: counter.labels(event).inc())
    return cache


class Service:
    """One server process: its parts (see the module docstring), built from ``cfg``, serving the
    classifier ``loader()`` returns. ``on_fatal(exc)`` is called when the model cannot be loaded."""

    def __init__(
        self,
        loader: Callable[[], Classifier],
        cfg: ServeConfig,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics = ServiceMetrics()
        self.result_cache = _result_cache(cfg, metrics)
        self.admission = Admission(cfg.max_queue, metrics.in_flight)
        self.life = Lifecycle(
            loader,
            cfg,
            metrics,
            result_cache=self.result_cache,
            more_coming=self.admission.more_coming,
            on_fatal=on_fatal,
        )
        self.health = Health(self.life, cfg.stall_timeout_s)
        self.pipeline = Pipeline(cfg, self.life, self.admission, metrics, self.result_cache)
        self.errors = ErrorRenderer(cfg.retry_after_s, metrics.rejected)
        self.bodies = BodyBudget(cfg.max_buffered_bytes, on_change=metrics.buffered_bytes.set)
        self.connections = ConnectionStats(
            cfg.max_connections,
            cfg.header_timeout_s,
            cfg.retry_after_s,
            on_event=lambda why: metrics.connections_refused.labels(why).inc(),
            linger_s=cfg.linger_timeout_s,
        )

    # the model's state, for ServerThread's users and tests
    @property
    def ready(self) -> bool:
        return self.life.ready

    @property
    def load_error(self) -> str | None:
        return self.life.load_error

    @property
    def clf(self) -> Classifier | None:
        """The classifier being served (None until loaded)."""
        return self.life.serving.handler.clf if self.life.serving is not None else None

    async def watch(self) -> None:
        """Keep the ready gauge and the per-worker process metrics current; hand freed heap pages back
        to the OS now and then (glibc keeps them per thread arena, so RSS creeps up under load)."""
        trim = _malloc_trim()
        while True:
            if trim is not None:  # off the loop: trimming a large heap takes milliseconds
                await asyncio.to_thread(trim, 0)
            self.metrics.ready.set(0 if self.health.readiness() else 1)
            self.metrics.open_connections.set(self.connections.open)
            self.metrics.refresh_process()
            await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.life.load()), loop.create_task(self.watch())]
        try:
            yield
        finally:
            await self.life.stop()  # finishes everything already queued
            for t in tasks:
                t.cancel()
            self.pipeline.close()


def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


__all__ = ["Service"]
