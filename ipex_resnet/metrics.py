"""A small, thread-safe Prometheus text exposition (format 0.0.4): counters, gauges, histograms.

The service needs a dozen series, so this writes the text format itself instead of depending on
prometheus_client; the output parses with any Prometheus scraper.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()):
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: dict | None) -> tuple[str, ...]:
        labels = labels or {}
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labelnames)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class _Scalar(_Metric):
    """One number per label set: the shared part of counters and gauges."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._values: dict[tuple, float] = {}

    def inc(self, amount: float = 1, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labelnames:
            items = [((), 0)]
        return self.header() + [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Counter(_Scalar):
    kind = "counter"


class Gauge(_Scalar):
    kind = "gauge"

    def __init__(self, *a, fn=None, **kw):
        super().__init__(*a, **kw)
        self._fn = fn  # a callable read at scrape time (no labels)

    def set(self, value: float, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def dec(self, amount: float = 1, **labels) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels) -> float:
        return float(self._fn()) if self._fn is not None else super().value(**labels)

    def render(self) -> list[str]:
        if self._fn is not None:
            return self.header() + [f"{self.name} {_num(float(self._fn()))}"]
        return super().render()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...] = (), buckets=LATENCY_BUCKETS):
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets)) + (math.inf,)
        self._data: dict[tuple, list] = {}  # key -> [bucket counts..., sum, count]

    def observe(self, value: float, **labels) -> None:
        key = self._key(labels)
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            d = self._data.setdefault(key, [0] * len(self.buckets) + [0.0, 0])
            d[i] += 1
            d[-2] += value
            d[-1] += 1

    def count(self, **labels) -> int:
        with self._lock:
            d = self._data.get(self._key(labels))
            return d[-1] if d else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        if not items and not self.labelnames:
            items = [((), [0] * len(self.buckets) + [0.0, 0])]
        out = self.header()
        for key, d in items:
            cum = 0
            for b, n in zip(self.buckets, d):
                cum += n
                le = 'le="' + _num(b) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cum}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_num(d[-2])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {d[-1]}")
        return out


class Rate:
    """Events per second over a sliding window (for an images/s gauge)."""

    def __init__(self, window_s: float = 10.0):
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, n: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self._events.append((now, n))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._events.popleft()

    def per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return sum(n for _, n in self._events) / self.window_s


class Registry:
    def __init__(self):
        self.metrics: list[_Metric] = []

    def add(self, metric):
        self.metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The series the HTTP service exports."""

    def __init__(self, queue_depth_fn=lambda: 0):
        r = self.registry = Registry()
        self.requests = r.add(Counter("ipex_resnet_requests_total", "HTTP requests answered, by endpoint and status.",
                                      ("endpoint", "status")))
        self.latency = r.add(Histogram("ipex_resnet_request_duration_seconds",
                                       "Time from request start to response, by endpoint.", ("endpoint",)))
        self.queue_wait = r.add(Histogram("ipex_resnet_queue_wait_seconds",
                                          "Time an image waited in the batching queue before inference started."))
        self.inference = r.add(Histogram("ipex_resnet_inference_seconds", "Model time per micro-batch."))
        self.batch_size = r.add(Histogram("ipex_resnet_batch_size", "Images per micro-batch.", buckets=BATCH_BUCKETS))
        self.queue_depth = r.add(Gauge("ipex_resnet_queue_depth", "Images waiting for a micro-batch now.",
                                       fn=queue_depth_fn))
        self.in_flight = r.add(Gauge("ipex_resnet_requests_in_flight",
                                     "Classify requests admitted and not yet answered."))
        self.images = r.add(Counter("ipex_resnet_images_total", "Images classified."))
        self.rate = Rate(10.0)
        self.images_per_second = r.add(Gauge("ipex_resnet_images_per_second",
                                             "Images classified per second over the last 10 s.",
                                             fn=self.rate.per_second))
        self.rejected = r.add(Counter("ipex_resnet_rejected_total",
                                      "Classify requests refused before inference, by reason.", ("reason",)))
        self.ready = r.add(Gauge("ipex_resnet_ready", "1 when the model is loaded and warmed up."))
        self.info = r.add(Gauge("ipex_resnet_model_info", "The model being served (value is always 1).",
                                ("model", "backend", "precision")))

    def render(self) -> str:
        return self.registry.render()
