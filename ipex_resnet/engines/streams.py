"""Inference streams: N copies of an engine's runner, each owned by one thread, shared safely by any
number of callers.

An engine's plain runner (:data:`~ipex_resnet.engines.base.Runner`) is for one caller at a time: an
OpenVINO ``InferRequest`` raises "Infer Request is busy" when two threads use it, and two threads in
torch each start their own OpenMP team on the same cores. :class:`Streams` fixes both: every stream is a
runner bound to one thread of its own (set to the stream's share of the cores), callers hand work to
whichever stream is free and wait for the answer. With one stream, calls from many threads run one
after another at full speed; with N streams, N calls run at once, each on ``threads / N`` cores, which is
how every engine reaches its throughput on a many-core CPU (OpenVINO: one compiled model with
``NUM_STREAMS=N`` and one ``InferRequest`` per stream; ONNX Runtime, Inductor, IPEX: N sessions or
packages; eager: N threads over the one module).

:class:`Streams` is safe to share between threads; :meth:`Streams.submit` returns a
``concurrent.futures.Future``, so an event loop can feed a free stream without blocking (the service's
batcher does).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Runner = Callable[[Any], Any]


class Streams:
    """``streams`` runners behind one thread each. Callable like a runner (``x -> logits``); thread-safe.

    ``torch_threads``: set torch's intra-op thread count in each stream thread (torch engines), so the
    N streams split the cores instead of each taking all of them.
    """

    def __init__(
        self, runners: Sequence[Runner], *, threads_per_stream: int, torch_threads: bool = False, name: str = "engine"
    ):
        if not runners:
            raise ValueError("at least one stream is needed")
        self.runners = list(runners)
        self.threads_per_stream = int(threads_per_stream)
        self._torch = torch_threads
        self._name = name
        self._local = threading.local()
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def count(self) -> int:
        return len(self.runners)

    def describe(self) -> str:
        return f"{self.count} x {self.threads_per_stream} thread{'s' if self.threads_per_stream != 1 else ''}"

    def __repr__(self) -> str:
        return f"<Streams {self._name}: {self.describe()}>"

    # -- threads ----------------------------------------------------------------------------------------
    def _init_thread(self) -> None:
        self._local.runner = self.runners[next(self._next) % self.count]
        if self._torch:
            import torch

            torch.set_num_threads(self.threads_per_stream)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False)

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:  # started on first use: a classifier made before a fork has no threads to lose
                if self._pool is None:
                    # the threads hold the streams weakly: a classifier dropped by its user takes them along
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        self.count,
                        thread_name_prefix=f"ipex-resnet-{self._name}",
                        initializer=_init_stream,
                        initargs=(weakref.ref(self),),
                    )
                pool = self._pool
        return pool

    def _run(self, x):
        return self._local.runner(x)

    # -- calls ------------------------------------------------------------------------------------------
    def submit(self, x) -> concurrent.futures.Future:
        """Queue ``x`` for the next free stream; the future holds its logits (or the runner's exception)."""
        return self._executor().submit(self._run, x)

    def __call__(self, x):
        return self.submit(x).result()

    def map(self, batches: Iterable[Any]) -> list:
        """Logits for each batch, in order; up to :attr:`count` of them run at once."""
        futures = [self.submit(b) for b in batches]
        return [f.result() for f in futures]

    def each(self, fn: Callable[[Runner], Any]) -> list:
        """Run ``fn(runner)`` once on every stream, in that stream's own thread (warm-up)."""
        barrier = threading.Barrier(self.count)

        def on_stream():
            barrier.wait()  # every task holds its thread until all have one: one task per stream thread
            return fn(self._local.runner)

        pool = self._executor()
        return [f.result() for f in [pool.submit(on_stream) for _ in range(self.count)]]

    def close(self) -> None:
        """Stop the stream threads once the calls already queued are done."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _init_stream(ref: weakref.ref[Streams]) -> None:
    streams = ref()
    if streams is not None:
        streams._init_thread()


def split_threads(threads: int, streams: int) -> int:
    """Each stream's share of ``threads`` (at least one)."""
    return max(1, int(threads) // max(1, int(streams)))


def stream_counts(threads: int) -> list[int]:
    """Candidate stream counts for ``threads``: every divisor of it from 1 (each stream at least 1 thread)."""
    return [n for n in range(1, int(threads) + 1) if int(threads) % n == 0]


__all__ = ["Streams", "split_threads", "stream_counts"]
