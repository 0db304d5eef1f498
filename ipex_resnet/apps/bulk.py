"""Bulk classification: files and folders -> one result per image, streamed in input order.

Decoding runs in a thread pool (Pillow releases the GIL while decoding and resizing), a bounded
window ahead of inference, so the model is fed while the next batch is decoded and memory stays
constant at any count: at most ``window`` preprocessed images (600 KB each at 224x224) are alive.
Each result is handed to a sink as soon as its batch is done; :class:`JsonlSink` writes and
flushes one JSON line per image, so an interrupted run keeps what it finished and ``--resume``
skips it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ipex_resnet.core.result_flow import ResultFlow, to_run
from ipex_resnet.errors import ConfigError, ImageError
from ipex_resnet.imaging import IMAGE_EXTENSIONS
from ipex_resnet.util.cpus import available_cores

if TYPE_CHECKING:
    from ipex_resnet.core.classifier import Classifier


def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files as given; folders walked recursively (sorted, image extensions only, hidden entries skipped).
    A path that does not exist is kept, so that it gets its own "no such file" result."""
    out: list[str] = []
    for item in items:
        if not os.path.isdir(item):
            out.append(item)
            continue
        for root, dirs, files in os.walk(item):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.extend(
                os.path.join(root, f)
                for f in sorted(files)
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS
            )
    return out


def done_inputs(path: str | os.PathLike) -> set[str]:
    """Inputs that already have a line in a JSONL file (for ``--resume``). A torn last line (a run
    killed mid-write) is cut off so that appending continues on a clean line."""
    p = Path(path)
    if not p.exists():
        return set()
    done: set[str] = set()
    good_end = 0
    with open(p, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    f"--resume: {p} has a line that is not JSON (at byte {good_end}); "
                    "is it a JSONL file written by ipex-resnet classify?"
                ) from None
            if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                done.add(rec["input"])
            good_end += len(raw)
    if good_end != p.stat().st_size:
        with open(p, "r+b") as f:
            f.truncate(good_end)
    return done


@dataclasses.dataclass
class Summary:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0


def default_workers(model_threads: int) -> int:
    """Decode threads: the cores the model's threads leave free, at least 2, at most 8.

    With no core to spare the decoders run in the gaps the model leaves and pre-empt it; two of them
    finish the next batch sooner than one, so the model waits less (3 or 4 gain nothing more; with a
    spare core 1 or 2 are equal)."""
    return max(2, min(8, available_cores() - model_threads))


# A sink gets (input, top-k list, None) or (input, None, error message), in input order.
Sink = Callable[[str, "list[dict] | None", "str | None"], None]


def run(
    clf: Classifier,
    inputs: Sequence[str],
    sink: Sink,
    *,
    topk: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool | None = None,
    flush: Callable[[], None] | None = None,
    overlap: bool = True,
) -> Summary:
    """Classify ``inputs`` with ``clf`` (a :class:`~ipex_resnet.Classifier`), feeding ``sink`` in order.

    ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal). ``overlap``: decode
    the next batch while the model runs (default); False alternates a batch of decoding (on
    ``workers`` threads) with a batch of inference. On 2 cores with the model on both, overlapping
    is faster: the OpenMP threads spin between batches and take the cores the alternating decoders
    would use.
    """
    from tqdm import tqdm

    workers = _check_settings(clf, batch_size, workers)
    window = 2 * batch_size + 2 * workers  # decoded ahead of inference: one batch runs, the next decodes
    summary = Summary()
    t_start = time.perf_counter()
    bar = tqdm(
        total=len(inputs),
        unit="img",
        disable=None if progress is None else not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    work, flow = _decoder(clf, topk)
    batcher = _Batcher(clf, flow, sink, summary, bar, topk=topk, batch_size=batch_size, flush=flush)
    try:
        with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="ipex-resnet-decode") as pool:
            if overlap:
                _run_overlapped(pool, work, inputs, batcher, window)
            else:
                _run_alternating(pool, work, inputs, batcher)
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t_start
    return summary


def _check_settings(clf: Classifier, batch_size: int, workers: int | None) -> int:
    """Validate ``batch_size`` and ``workers``; return the decode thread count (default: :func:`default_workers`)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    workers = workers or default_workers(clf.plan.threads)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    return workers


def _safe(step: Callable[[str], object]) -> Callable[[str], object]:
    """``step(name)``, with a bad input returned (not raised) as an :class:`ImageError` naming it: one
    bad input must not stop the run."""

    def work(name: str) -> object:
        try:
            return step(name)
        except ImageError as exc:
            return exc
        except Exception as exc:
            return ImageError(name, f"cannot decode: {type(exc).__name__}: {exc}")

    return work


def _decoder(clf: Classifier, topk: int) -> tuple[Callable[[str], object], ResultFlow | None]:
    """The decode step, returning (not raising) an :class:`ImageError` for a bad input, and the result
    cache's flow (None when the classifier has no cache). Through the cache, a hit is a
    :class:`~ipex_resnet.core.result_flow.Hit` (exact mode reads the file but decodes nothing) and a
    miss a :class:`~ipex_resnet.core.result_flow.Miss`; a bad input is never stored."""
    cache = clf.result_cache
    if cache is None:
        pre = clf.preprocessor
        return _safe(lambda name: pre(name, name=name)), None
    flow = ResultFlow(cache, clf)
    return _safe(lambda name: flow.look_up(name, name=name, topk=topk)), flow


class _Batcher:
    """Collects decoded inputs and, per batch, runs the model and feeds the sink in input order."""

    def __init__(
        self,
        clf: Classifier,
        flow: ResultFlow | None,
        sink: Sink,
        summary: Summary,
        bar: Any,
        *,
        topk: int,
        batch_size: int,
        flush: Callable[[], None] | None,
    ) -> None:
        self.clf, self.flow, self.sink, self.summary, self.bar = clf, flow, sink, summary, bar
        self.topk, self.batch_size, self.flush = topk, batch_size, flush
        self.pending: list[tuple[str, object]] = []

    def _tops(self, items: list[object]) -> list[list[dict]]:
        """The top-k of the decoded items: the misses (or all, without a cache) run as one batch."""
        arrays = to_run(items)
        tops = self.clf.predict_tensors(arrays, topk=self.topk, batch_size=self.batch_size) if arrays else []
        return tops if self.flow is None else self.flow.store(items, tops, self.topk)

    def emit(self) -> None:
        tops = iter(self._tops([x for _, x in self.pending if not isinstance(x, ImageError)]))
        for name, x in self.pending:
            if isinstance(x, ImageError):
                self.summary.failed += 1
                self.sink(name, None, x.problem)
            else:
                self.summary.ok += 1
                self.sink(name, next(tops), None)
        if self.flush:
            self.flush()
        self.bar.update(len(self.pending))
        self.pending.clear()


def _run_alternating(
    pool: concurrent.futures.Executor, work: Callable[[str], object], inputs: Sequence[str], batcher: _Batcher
) -> None:
    """Decode a batch on all workers, then run it; repeat."""
    batch_size = batcher.batch_size
    for i in range(0, len(inputs), batch_size):
        chunk = inputs[i : i + batch_size]
        batcher.pending.extend(zip(chunk, pool.map(work, chunk)))
        batcher.emit()


def _run_overlapped(
    pool: concurrent.futures.Executor,
    work: Callable[[str], object],
    inputs: Sequence[str],
    batcher: _Batcher,
    window: int,
) -> None:
    """Keep up to ``window`` inputs decoding ahead, and run each batch as soon as it is decoded."""
    queue: collections.deque[tuple[str, concurrent.futures.Future]] = collections.deque()
    it = iter(inputs)
    for name in it:
        queue.append((name, pool.submit(work, name)))
        if len(queue) >= window:
            break
    while queue:
        name, fut = queue.popleft()
        nxt = next(it, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(work, nxt)))
        batcher.pending.append((name, fut.result()))
        if len(batcher.pending) >= batcher.batch_size:
            batcher.emit()
    if batcher.pending:
        batcher.emit()


class JsonlSink:
    """One JSON line per image, ``{"input", "top"}`` or ``{"input", "error"}``; flushed per batch."""

    def __init__(self, f: TextIO, on_error: Callable[[str, str], None] | None = None):
        self.f, self.on_error = f, on_error

    def __call__(self, name: str, top: list[dict] | None, error: str | None) -> None:
        rec = {"input": name, "top": top} if error is None else {"input": name, "error": error}
        self.f.write(json.dumps(rec) + "\n")
        if error is not None and self.on_error:
            self.on_error(name, error)

    def flush(self) -> None:
        self.f.flush()


def classify_to_jsonl(
    clf: Classifier,
    items: Sequence[str],
    out: str,
    *,
    resume: bool = False,
    topk: int = 5,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool | None = None,
) -> Summary:
    """The ``classify --jsonl OUT`` command: expand folders, skip what OUT has (``resume``), stream."""
    from tqdm import tqdm

    inputs = expand_inputs(items)
    skipped = 0
    if resume:
        if out == "-":
            raise ConfigError("--resume needs --jsonl FILE, not stdout")
        done = done_inputs(out)
        before = len(inputs)
        inputs = [p for p in inputs if p not in done]
        skipped = before - len(inputs)
    if out == "-":
        f, close = sys.stdout, False
    else:
        try:
            f, close = open(out, "a" if resume else "w", encoding="utf-8"), True  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        sink = JsonlSink(f, on_error=lambda n, e: tqdm.write(f"error: {n}: {e}", file=sys.stderr))
        summary = run(
            clf, inputs, sink, topk=topk, batch_size=batch_size, workers=workers, progress=progress, flush=sink.flush
        )
    finally:
        if close:
            f.close()
    summary.skipped = skipped
    return summary
