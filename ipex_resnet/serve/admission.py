"""Admission: at most ``max_queue`` requests are processed at once (the next is refused with 503 at once,
never queued behind them), and how many admitted requests are still preparing their images (not yet
queued for a batch: the micro-batcher may wait a moment for them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ipex_resnet.serve.errors import Unavailable


class Admission:
    """Counts the requests in flight (``gauge``: the Prometheus gauge that shows them) and those preparing."""

    def __init__(self, max_queue: int, gauge: Any):
        self.max_queue, self.gauge = max_queue, gauge
        self.in_flight = 0
        self.preparing_count = 0

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """A place among the ``max_queue`` requests being processed, or 503 at once."""
        if self.in_flight >= self.max_queue:
            raise Unavailable(f"too many requests in flight ({self.max_queue}); retry shortly", code="overloaded")
        self.in_flight += 1
        self.gauge.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self.gauge.set(self.in_flight)

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """Around an admitted request's decoding and preprocessing: until it is queued, a batch may wait for it."""
        self.preparing_count += 1
        try:
            yield
        finally:
            self.preparing_count -= 1

    def more_coming(self) -> bool:
        """Is an admitted request on its way to the batching queue? (The batcher's ``more_coming``.)"""
        return self.preparing_count > 0


__all__ = ["Admission"]
