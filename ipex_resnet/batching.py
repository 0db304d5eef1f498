"""Dynamic micro-batching: requests queue images; one task groups them; one thread runs the model.

The batcher lives on the event loop. :meth:`Batcher.submit` puts preprocessed images on the queue
and returns one future per image. The collector takes the first waiting image, then keeps taking
until the batch is full (``max_batch``) or the first image has waited ``max_wait_s``, and runs the
batch in a single dedicated inference thread, so the event loop never blocks on the model. If the
caller says no other request is on its way (``more_coming``), a batch does not wait at all. The
queue is bounded (``max_queue`` images); past it :meth:`submit` raises :class:`QueueFull` at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Sequence

import torch


class QueueFull(Exception):
    """The batching queue is full: shed load (the service answers 503 with Retry-After)."""


class Stopped(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclasses.dataclass
class Job:
    tensor: torch.Tensor
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


class Batcher:
    """Groups queued images into micro-batches and runs ``infer(batch_nchw) -> logits`` on them.

    ``topk(logits, k)`` turns logits into per-row results. With ``pad=True`` every batch is padded
    (with copies of its last image) up to the next size in :func:`bucket_sizes`, so a backend that
    specializes on shape (Inductor) only ever sees the warmed-up sizes.
    """

    def __init__(self, infer: Callable[[torch.Tensor], torch.Tensor], topk: Callable, *, max_batch: int = 16,
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

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="ipex-resnet-batcher")

    async def stop(self) -> None:
        """Refuse new work, finish everything already queued, then stop the inference thread."""
        self._stopping = True
        if self._queue is not None and self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -- producer side --------------------------------------------------------------------------
    def submit(self, tensors: Sequence[torch.Tensor], topk: int) -> list[asyncio.Future]:
        """Queue all images of one request, or none (QueueFull / Stopped). Call on the event loop."""
        if self._stopping or self._queue is None:
            raise Stopped("the service is shutting down")
        if self._queue.qsize() + len(tensors) > self.max_queue:
            raise QueueFull(f"queue full ({self._queue.qsize()} of {self.max_queue} images waiting)")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for t in tensors:
            job = Job(t, topk, loop.create_future(), now)
            self._queue.put_nowait(job)
            futures.append(job.future)
        return futures

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
            try:
                await self._run(batch)
            finally:
                for _ in batch:
                    q.task_done()

    async def _run(self, batch: list[Job]) -> None:
        live = [j for j in batch if not j.future.done()]  # a timed-out request cancelled its futures
        if not live:
            return
        started = time.monotonic()
        if self.metrics is not None:
            for j in live:
                self.metrics.queue_wait.observe(started - j.enqueued)
            self.metrics.batch_size.observe(len(live))
        k = max(j.topk for j in live)
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._infer_batch, [j.tensor for j in live], k)
        except Exception as exc:  # noqa: BLE001 - hand the failure to every waiting request
            for j in live:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        self.batches += 1
        if self.metrics is not None:
            self.metrics.inference.observe(time.monotonic() - started)
            self.metrics.images.inc(len(live))
            self.metrics.rate.add(len(live))
        for j, r in zip(live, results):
            if not j.future.done():
                j.future.set_result(r[:j.topk])

    def _infer_batch(self, tensors: list[torch.Tensor], k: int) -> list[list[dict]]:
        n = len(tensors)
        if self.pad:
            size = next(s for s in bucket_sizes(self.max_batch) if s >= n)
            tensors = tensors + [tensors[-1]] * (size - n)
        logits = self.infer(torch.stack(tensors))
        return self.topk(logits[:n], k)
