"""Dynamic micro-batching: requests queue images; one batching thread per inference stream takes them.

:meth:`Batcher.submit` (on the event loop) puts preprocessed images on a thread-safe queue and returns
one future per image. Each of the ``streams`` batching threads takes the first waiting image as soon as
its stream is free, then keeps taking until the batch is full (``max_batch``) or the first image has
waited ``max_wait_s``, runs the batch on its stream and hands the results back to the loop in one call.
A free stream is fed straight from the queue: no round trip through the event loop between batches,
and with N streams N batches run at once. If the caller says no other request is on its way
(``more_coming``), a batch does not wait at all. The queue is bounded (``max_queue`` images); past it
:meth:`submit` raises :class:`QueueFull` at once.

``max_batch`` is the service's to choose: it caps it by the latency target (:mod:`.tuning`), since an
image that arrives behind a batch of k waits for all k.

A batch that raises fails only its own requests (:class:`BatchFailed`); the thread goes on.
:meth:`Batcher.problem` says when inference stopped making progress (a batch running or an image
waiting longer than the stall limit) or a batching thread died: the health endpoints turn red on it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
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
    """Groups queued images into micro-batches and runs ``infer(batch_nchw) -> logits`` on them, ``streams``
    batches at once (the service passes its :class:`~ipex_resnet.serve.handler.Handler`'s ``predict``,
    which runs on the classifier's streams, and ``topk``).

    ``topk(logits, k)`` turns logits into per-row results. With ``pad=True`` every batch is padded
    (with copies of its last image) up to the next size in :func:`bucket_sizes`, so a backend that
    specializes on shape (Inductor) only ever sees the warmed-up sizes.
    """

    def __init__(
        self,
        infer: Callable[[np.ndarray], np.ndarray],
        topk: Callable,
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        pad: bool = False,
        metrics=None,
        more_coming: Callable[[], bool] | None = None,
        streams: int = 1,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if streams < 1:
            raise ValueError(f"streams must be at least 1, got {streams}")
        self.infer, self.topk = infer, topk
        self.max_batch, self.max_wait_s, self.max_queue, self.pad = max_batch, max_wait_s, max_queue, pad
        self.streams = streams
        self.metrics = metrics
        self.more_coming = more_coming  # False when no other request is on its way: do not wait for one
        self._jobs: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unfinished = 0  # images queued or in a running batch
        self._idle: asyncio.Event | None = None  # set when nothing is unfinished
        self._stopping = self._closed = False
        self.batches = 0
        self.failed_batches = 0
        self._busy: dict[int, float] = {}  # batching thread -> when its running batch entered the model
        self.last_progress = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        for i in range(self.streams):
            t = threading.Thread(target=self._work, args=(i,), name=f"ipex-resnet-batch-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new work, finish everything already queued (for at most ``timeout_s``), then stop."""
        self._stopping = True
        if self._idle is not None and self._threads:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except asyncio.TimeoutError:
                log.warning("stopping with %d image(s) unfinished after %g s", self._unfinished, timeout_s)
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for j in left:  # past the graceful timeout: what never reached a stream is answered, not lost
            if not j.future.done():
                j.future.set_exception(Stopped("the service stopped before this image was classified"))

    @property
    def depth(self) -> int:
        return len(self._jobs)

    @property
    def busy_since(self) -> float | None:
        """When the longest-running batch entered the model (None: no batch running)."""
        busy = list(self._busy.values())
        return min(busy) if busy else None

    def problem(self, stall_s: float) -> str | None:
        """None while inference makes progress; otherwise why not (for /healthz and /readyz)."""
        if self._threads and not all(t.is_alive() for t in self._threads) and not self._closed:
            return "a batching thread has stopped"
        now = time.monotonic()
        busy_since = self.busy_since
        if busy_since is not None and now - busy_since > stall_s:
            return f"a batch has been running for {now - busy_since:.0f} s (stall limit {stall_s:g} s)"
        if busy_since is None and self.depth and now - self.last_progress > stall_s:
            return f"images have waited {now - self.last_progress:.0f} s without a batch starting"
        return None

    # -- producer side (the event loop) ---------------------------------------------------------
    def submit(self, tensors: Sequence[np.ndarray], topk: int) -> list[asyncio.Future]:
        """Queue all images of one request, or none (QueueFull / Stopped). Call on the event loop."""
        if self._stopping or self._loop is None:
            raise Stopped("the service is shutting down")
        loop = self._loop
        now = time.monotonic()
        jobs = [Job(t, topk, loop.create_future(), now) for t in tensors]
        with self._cond:
            if len(self._jobs) + len(jobs) > self.max_queue:
                raise QueueFull(f"queue full ({len(self._jobs)} of {self.max_queue} images waiting)")
            if not self._jobs and not self._busy:
                self.last_progress = now  # an idle batcher is not stalled
            self._jobs.extend(jobs)
            self._unfinished += len(jobs)
            self._cond.notify()
        if self._idle is not None:
            self._idle.clear()
        self._depth_changed()
        return [j.future for j in jobs]

    def _depth_changed(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self.depth)

    # -- consumer side (one thread per stream) --------------------------------------------------
    def _take(self) -> list[Job] | None:
        """The next batch: wait for a first image, then for company until full or its wait is over."""
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._jobs.popleft()]
            deadline = batch[0].enqueued + self.max_wait_s
            while len(batch) < self.max_batch:
                if self._jobs:
                    batch.append(self._jobs.popleft())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.more_coming is not None and not self.more_coming()):
                    break
                self._cond.wait(remaining)
            if self._jobs:
                self._cond.notify()  # what is left is the next free thread's
            return batch

    def _work(self, index: int) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._run(index, batch)
            except BaseException:
                log.exception("the batching thread failed on a batch of %d image(s)", len(batch))
                self._post(batch, None, BatchFailed("inference failed for the batch this image was in"))
            finally:
                self.last_progress = time.monotonic()

    def _run(self, index: int, batch: list[Job]) -> None:
        live = [j for j in batch if not j.future.done()]  # a timed-out or disconnected request dropped its images
        if not live:
            self._post(batch, None, None)
            return
        started = time.monotonic()
        if self.metrics is not None:
            for j in live:
                self.metrics.queue_wait.observe(started - j.enqueued)
            self.metrics.batch_size.observe(len(live))
        self._busy[index] = started
        try:
            results = self._infer_batch([j.tensor for j in live], max(j.topk for j in live))
        except Exception:
            log.exception("a batch of %d image(s) failed", len(live))
            self._post(batch, None, BatchFailed("inference failed for the batch this image was in"), failed=True)
            return
        finally:
            self._busy.pop(index, None)
        if self.metrics is not None:
            self.metrics.inference.observe(time.monotonic() - started)
            self.metrics.images.inc(len(live))
        self._post(live, results, None, count=len(batch))

    def _post(
        self, jobs: list[Job], results, error: BaseException | None, *, failed: bool = False, count: int | None = None
    ) -> None:
        """Hand a finished batch to the loop in one call (futures belong to the loop's thread);
        ``count``: the images it finishes (dropped ones included)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(
                self._deliver, jobs, results, error, failed, len(jobs) if count is None else count
            )
        except RuntimeError:  # the loop closed meanwhile: nobody waits for these answers any more
            pass

    def _deliver(self, jobs: list[Job], results, error, failed: bool, count: int) -> None:
        if failed:
            self.failed_batches += 1
            if self.metrics is not None:
                self.metrics.failed_batches.inc()
        elif results is not None:
            self.batches += 1
        for i, j in enumerate(jobs):
            if j.future.done():
                continue
            if results is not None:
                j.future.set_result(results[i][: j.topk])
            elif error is not None:
                j.future.set_exception(error)
        self._unfinished -= count
        if self._unfinished <= 0 and self._idle is not None:
            self._idle.set()
        self._depth_changed()

    def _infer_batch(self, tensors: list[np.ndarray], k: int) -> list[list[dict]]:
        n = len(tensors)
        if self.pad:
            size = next(s for s in bucket_sizes(self.max_batch) if s >= n)
            tensors = tensors + [tensors[-1]] * (size - n)
        logits = self.infer(np.stack(tensors))
        return self.topk(logits[:n], k)
