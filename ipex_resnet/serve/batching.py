"""Dynamic micro-batching: requests queue images; one task groups them; one thread runs the model.

The batcher lives on the event loop. :meth:`Batcher.submit` puts preprocessed images on the queue
and returns one future per image. The collector takes the first waiting image, then keeps taking
until the batch is full (``max_batch``) or the first image has waited ``max_wait_s``, and runs the
batch in a single dedicated inference thread, so the event loop never blocks on the model. If the
caller says no other request is on its way (``more_coming``), a batch does not wait at all. The
queue is bounded (``max_queue`` images); past it :meth:`submit` raises :class:`QueueFull` at once.

A batch that raises fails only its own requests (:class:`BatchFailed`); the collector goes on.
:meth:`Batcher.problem` says when inference stopped making progress (a batch running or an image
waiting longer than the stall limit) or the collector died: the health endpoints turn red on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

log = logging.getLogger("ipex_resnet.serve")


class QueueFull(Exception):
    """The batching queue is full: shed load (the service answers 503 with Retry-After)."""


class Stopped(Exception):
    """The batcher is shutting down and takes no new work."""


class BatchFailed(Exception):
    """The batch this image was in raised; the cause is logged, not handed to the client."""


@dataclasses.dataclass
class Job:
    tensor: np.ndarray
    topk: int
    future: asyncio.Future
    enqueued: float


def bucket_sizes(max_batch: int) -> list[int]:
    """Powers of two up to max_batch, plus max_batch: the shapes a padded batch can take."""
    sizes, n = [], 1
    while n < max_batch:
        sizes.append(n)
        n *= 2
    return sizes + [max_batch]


def warmup_sizes(max_batch: int, pad: bool) -> list[int]:
    return bucket_sizes(max_batch) if pad else sorted({1, max_batch})


class Batcher:
    """Groups queued images into micro-batches and runs ``infer(batch_nchw) -> logits`` on them (the
    service passes its :class:`~ipex_resnet.serve.handler.Handler`'s ``predict`` and ``topk``).

    ``topk(logits, k)`` turns logits into per-row results. With ``pad=True`` every batch is padded
    (with copies of its last image) up to the next size in :func:`bucket_sizes`, so a backend that
    specializes on shape (Inductor) only ever sees the warmed-up sizes.
    """

    def __init__(self, infer: Callable[[np.ndarray], np.ndarray], topk: Callable, *, max_batch: int = 16,
                 max_wait_s: float = 0.005, max_queue: int = 256, pad: bool = False, metrics=None,
                 more_coming: Callable[[], bool] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.infer, self.topk = infer, topk
        self.max_batch, self.max_wait_s, self.max_queue, self.pad = max_batch, max_wait_s, max_queue, pad
        self.metrics = metrics
        self.more_coming = more_coming  # False when no other request is on its way: do not wait for one
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ipex-resnet-infer")
        self._stopping = False
        self.batches = 0
        self.failed_batches = 0
        self.busy_since: float | None = None  # when the running batch entered the model
        self.last_progress = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="ipex-resnet-batcher")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new work, finish everything already queued (for at most ``timeout_s``), then stop."""
        self._stopping = True
        if self._queue is not None and self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except asyncio.TimeoutError:
                log.warning("stopping with %d image(s) unfinished after %g s", self.depth, timeout_s)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def problem(self, stall_s: float) -> str | None:
        """None while inference makes progress; otherwise why not (for /healthz and /readyz)."""
        if self._task is not None and self._task.done():
            return "the batch collector has stopped"
        now = time.monotonic()
        if self.busy_since is not None and now - self.busy_since > stall_s:
            return f"a batch has been running for {now - self.busy_since:.0f} s (stall limit {stall_s:g} s)"
        if self.busy_since is None and self.depth and now - self.last_progress > stall_s:
            return f"images have waited {now - self.last_progress:.0f} s without a batch starting"
        return None

    # -- producer side --------------------------------------------------------------------------
    def submit(self, tensors: Sequence[np.ndarray], topk: int) -> list[asyncio.Future]:
        """Queue all images of one request, or none (QueueFull / Stopped). Call on the event loop."""
        if self._stopping or self._queue is None:
            raise Stopped("the service is shutting down")
        if self._queue.qsize() + len(tensors) > self.max_queue:
            raise QueueFull(f"queue full ({self._queue.qsize()} of {self.max_queue} images waiting)")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if not self._queue.qsize() and self.busy_since is None:
            self.last_progress = now  # an idle batcher is not stalled
        futures = []
        for t in tensors:
            job = Job(t, topk, loop.create_future(), now)
            self._queue.put_nowait(job)
            futures.append(job.future)
        self._depth_changed()
        return futures

    def _depth_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)

    # -- consumer side --------------------------------------------------------------------------
    async def _collect(self) -> None:
        q = self._queue
        assert q is not None
        while True:
            first = await q.get()
            batch = [first]
            deadline = first.enqueued + self.max_wait_s
            while len(batch) < self.max_batch:
                if not q.empty():
                    batch.append(q.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.more_coming is not None and not self.more_coming()):
                    break
                try:
                    batch.append(await asyncio.wait_for(q.get(), remaining))
                except asyncio.TimeoutError:
                    break
            self._depth_changed()
            try:
                await self._run(batch)
            finally:
                self.last_progress = time.monotonic()
                for _ in batch:
                    q.task_done()

    async def _run(self, batch: list[Job]) -> None:
        live = [j for j in batch if not j.future.done()]  # a timed-out or disconnected request dropped its images
        if not live:
            return
        started = time.monotonic()
        if self.metrics is not None:
            for j in live:
                self.metrics.queue_wait.observe(started - j.enqueued)
            self.metrics.batch_size.observe(len(live))
        k = max(j.topk for j in live)
        loop = asyncio.get_running_loop()
        self.busy_since = started
        try:
            results = await loop.run_in_executor(self._pool, self._infer_batch, [j.tensor for j in live], k)
        except Exception:  # noqa: BLE001 - fail this batch's requests only, log why, keep collecting
            self.failed_batches += 1
            log.exception("a batch of %d image(s) failed", len(live))
            if self.metrics is not None:
                self.metrics.failed_batches.inc()
            for j in live:
                if not j.future.done():
                    j.future.set_exception(BatchFailed("inference failed for the batch this image was in"))
            return
        finally:
            self.busy_since = None
        self.batches += 1
        if self.metrics is not None:
            self.metrics.inference.observe(time.monotonic() - started)
            self.metrics.images.inc(len(live))
        for j, r in zip(live, results):
            if not j.future.done():
                j.future.set_result(r[:j.topk])

    def _infer_batch(self, tensors: list[np.ndarray], k: int) -> list[list[dict]]:
        n = len(tensors)
        if self.pad:
            size = next(s for s in bucket_sizes(self.max_batch) if s >= n)
            tensors = tensors + [tensors[-1]] * (size - n)
        logits = self.infer(np.stack(tensors))
        return self.topk(logits[:n], k)
