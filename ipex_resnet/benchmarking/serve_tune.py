"""``ipex-resnet serve --tune`` (on by default): before the service starts on a machine for the first time
with a model and a latency target, measure candidate settings against the service itself and start with
the best.

Each candidate (workers x streams x threads per stream, then the batcher's wait for the best of them) is a
real ``ipex-resnet serve`` on a free loopback port, driven by LoadGen's Server scenario over HTTP with
photo-sized JPEGs: the highest Poisson rate whose p99 stays under the target, searched until a passing
and a failing rate lie within :data:`RESOLUTION`. The micro-batch cap is the service's own (its
latency-vs-batch curve). The choice is cached under the artifact cache root, keyed by the CPU, the
engines' versions, the model spec (:class:`~ipex_resnet.models.spec.ModelSpec`) with the backend,
precision and INT8 options, and the target: a changed model, engine, precision, CPU or target measures
again.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipex_resnet.errors import ConfigError

if TYPE_CHECKING:
    from ipex_resnet.models.spec import ModelSpec

RUN_S = 4.0  # seconds per LoadGen run, at least
MIN_SAMPLES = 400  # per run: a p99 on 4 or more samples (3-s runs of ~270 samples misjudged 2 streams
# by 1.5x against the bench's 1,000-sample runs on the 2-core EPYC)
RESOLUTION = 0.15  # the search ends when a passing and a failing rate are this close
MAX_RUNS = 5
WAITS_MS = (5.0, 1.0)  # the batcher's wait: the default, then the shorter one for the best candidate
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class Candidate:
    workers: int
    streams: int
    threads: int  # per worker
    max_wait_ms: float

    def describe(self) -> str:
        per = max(1, self.threads // self.streams)
        return (
            f"{self.workers} worker{'s' if self.workers > 1 else ''} x {self.streams} stream"
            f"{'s' if self.streams > 1 else ''} x {per} thread{'s' if per > 1 else ''}, wait {self.max_wait_ms:g} ms"
        )


def candidates(cpus: int, workers: int | None, streams: int | None, threads: int | None) -> list[Candidate]:
    """Workers (1, and one per core where that differs) x every stream count that divides a worker's
    threads, at the default wait; what the user fixed stays fixed."""
    from ipex_resnet.engines.streams import stream_counts

    worker_counts = (
        [workers] if workers else [w for w in sorted({1, cpus}) if w == 1 or not threads or w * threads <= cpus]
    )
    out = []
    for w in worker_counts:
        per = threads or max(1, cpus // w)
        for s in [streams] if streams else stream_counts(per):
            if s <= per:
                out.append(Candidate(w, s, per, WAITS_MS[0]))
    if not out:
        raise ConfigError(
            f"--streams {streams} needs at least {streams} threads per worker; there are "
            f"{threads or max(1, cpus // (workers or 1))}"
        )
    return out


def require_loadgen() -> None:
    """BackendUnavailable (with the install line) when MLCommons' LoadGen is missing."""
    from ipex_resnet.benchmarking import loadgen as L

    L.lg()


def key(spec: ModelSpec, options: Mapping[str, Any], p99_ms: float, max_batch: int, cpus: int) -> dict:
    """The cache key of a choice: the CPU, the engines' versions, ``spec`` with the plan's ``options``
    (backend, precision, streams, the INT8 options; not the threads, which the choice sets) and the target."""
    from ipex_resnet.benchmarking.machine import versions
    from ipex_resnet.hardware.cpu import probe

    cpu = probe(check_torch=False)
    model = {"model": spec.model, **spec.load_kwargs(), **options}
    return {
        "schema": SCHEMA,
        "cpu": cpu.model_name,
        "isa": cpu.isa_level,
        "cpus": cpus,
        "versions": versions(),
        "model": {k: _plain(v) for k, v in sorted(model.items()) if k != "threads"},
        "p99_ms": p99_ms,
        "max_batch": max_batch,
    }


def _plain(value):
    """A model option as JSON data: a preset by its fields, anything else unknown by its repr."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _path(k: dict) -> Path:
    from ipex_resnet.core.cache import digest, root

    return root() / "serve-tuning" / f"{digest(k)}.json"


def cached(k: dict) -> dict | None:
    try:
        record = json.loads(_path(k).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("key") == json.loads(json.dumps(k)) and record.get("best") else None


def tune(
    k: dict,
    command: Callable[[Candidate], list[str]],
    cands: list[Candidate],
    p99_ms: float,
    progress: Callable[[str], None],
) -> dict:
    """The cached choice for ``k``, or measure every candidate (``command(c)``: its serve command line, to
    which ``--port`` is added) and cache the best. Returns the record: ``best`` (a :class:`Candidate`'s
    fields plus ``capacity_qps``) and ``rows``, one per candidate measured."""
    from ipex_resnet.util.files import write_json_atomic

    record = cached(k)
    if record is not None:
        record["cached"] = True
        return record
    import logging

    from ipex_resnet.benchmarking import loadgen as L

    L.lg()  # LoadGen missing: one clear line before anything starts
    for name in ("httpx", "httpcore", "aiohttp"):  # HTTP clients that log every request at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    rows: list[dict] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_tune_") as tmp:

        def measure(c: Candidate, what: str) -> None:
            progress(f"tuning {what}: {c.describe()} (LoadGen Server, p99 <= {p99_ms:g} ms)")
            rows.append({**dataclasses.asdict(c), **_measure(command(c), p99_ms, Path(tmp) / str(len(rows)))})
            progress(f"  -> {_row_text(rows[-1])}")

        for i, c in enumerate(cands):
            measure(c, f"{i + 1}/{len(cands)}")
        best = _best(rows)
        if best is not None:  # then the shorter waits, on the best of the structural candidates
            first = cands[rows.index(best)]
            for wait in WAITS_MS[1:]:
                measure(dataclasses.replace(first, max_wait_ms=wait), "the best with a shorter wait")
    best = _best(rows)
    if best is None:
        raise ConfigError(
            f"--tune: no candidate met p99 <= {p99_ms:g} ms at any rate ("
            + "; ".join(_row_text(r) for r in rows)
            + "); ask for a larger --p99-ms or pass --no-tune"
        )
    record = {
        "key": k,
        "best": best,
        "rows": rows,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.monotonic() - t0, 1),
    }
    write_json_atomic(_path(k), record, indent=1)
    record["cached"] = False
    return record


def _best(rows: list[dict]) -> dict | None:
    good = [r for r in rows if r.get("capacity_qps")]
    return max(good, key=lambda r: r["capacity_qps"]) if good else None


def _row_text(r: dict) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    return f"{r['capacity_qps']:.1f} QPS (p99 {r.get('p99_ms') or 0:.1f} ms there)"


def _measure(cmd: list[str], p99_ms: float, logs: Path) -> dict:
    from ipex_resnet.benchmarking import loadgen as L
    from ipex_resnet.benchmarking.inputs import jpegs
    from ipex_resnet.benchmarking.scenarios import raw_request, served_capacity

    photos = jpegs(None)
    rs = L.RunSettings(RUN_S, len(photos), p99_ms=p99_ms, min_queries=MIN_SAMPLES)
    try:
        r = served_capacity(
            cmd,
            "/v1/classify",
            raw_request(photos),
            rs,
            logs,
            float("inf"),
            {"resolution": RESOLUTION, "max_runs": MAX_RUNS},
            8,
        )
    except Exception as exc:
        from ipex_resnet.errors import first_line

        return {"error": first_line(exc)}
    return {
        "capacity_qps": round(r["capacity_qps"], 1),
        "p99_ms": (r.get("at_capacity") or {}).get("p99_ms"),
        "probed_qps": round(r.get("probed_qps", 0), 1),
        "runs": len(r["tried"]),
    }


def describe(record: dict) -> str:
    """The ready line's account of the choice."""
    b = record["best"]
    c = Candidate(b["workers"], b["streams"], b["threads"], b["max_wait_ms"])
    how = "cached" if record.get("cached") else f"measured {len(record['rows'])} candidates in {record['seconds']:g} s"
    return (
        f"tuned ({how}, {record.get('when', '')}): {c.describe()}: {b['capacity_qps']:g} QPS with p99 <= "
        f"{record['key']['p99_ms']:g} ms"
    )


__all__ = ["Candidate", "cached", "candidates", "describe", "key", "require_loadgen", "tune"]
