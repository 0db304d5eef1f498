"""The gate's time measurement: each of our paths' ratio to the eager FP32 reference, from paired calls
in fresh single-threaded processes, and how much that ratio moves between processes (its noise).

Design, from ``bench/gate_experiment.py`` (docs/benchmarks.md, "A gate that knows its own noise"): a
process runs paired rounds of (reference call, path call) per path and batch size, at least ``rounds``
and about ``TIMING_S`` seconds of them, and reports the fastest call of each; its ratio is the one over
the other. The gate's ratio is the median of its processes' ratios, and their spread is its noise
(:mod:`.noise`). While a check's change lies between the tolerance and the noise floor (or, saving a
baseline, while its own floor is above the tolerance), :func:`measure` takes one more process, up to
``MAX_PROCESSES`` and a time budget. One thread: on a shared 2-core machine a descheduled OpenMP
thread stalls every barrier of a fast path more than the slow reference. Fixed malloc thresholds
(:func:`child_env`): otherwise whether activations page-fault on every call depends on the process.

    python -m ipex_resnet.benchmarking.gate_timing '{"model": ..., "paths": [["openvino", "fp32"]], ...}'

prints one JSON line (the child side); :func:`measure` is the parent side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from statistics import median

from ipex_resnet.benchmarking.matrix import REFERENCE, PathSpec
from ipex_resnet.benchmarking.noise import INCONCLUSIVE, judge, log_spread, self_floor
from ipex_resnet.errors import first_line
from ipex_resnet.models.spec import ModelSpec

ESTIMATOR = "median-of-processes"
THREADS = 1
TIMING_S = 1.0  # seconds of paired rounds per path and batch size in each process, at least GATE_ROUNDS
MAX_ROUNDS = 2000
MAX_PROCESSES = 24  # a run or baseline whose noise leaves a check undecided takes more, up to this (and the budget)
TIMEOUT_S = 1800  # per process; a cold artifact cache means compiles
# glibc: serve every block from the heap and never trim it (see child_env); other C libraries ignore these
MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def batch_sizes(report_sizes: Sequence[int]) -> list[int]:
    """What the gate times: batch 1 and the smallest batch above it (the largest costs minutes at one
    thread and shows the same kernels)."""
    above = [b for b in report_sizes if b > 1]
    return [1] + ([min(above)] if above else [])


def method(rounds: int, processes: int) -> dict:
    """How the ratios were measured, as recorded in the report and compared with a baseline's."""
    return {"estimator": ESTIMATOR, "threads": THREADS, "rounds": rounds, "processes": processes}


def measure(
    paths: Sequence[PathSpec],
    *,
    model: ModelSpec,
    images: str | None,
    crop: int,
    sizes: Sequence[int],
    rounds: int,
    processes: int,
    step: Callable[[str], None] = lambda msg: None,
    timeout: float = TIMEOUT_S,
    more: Callable[[dict], bool] | None = None,
    budget_s: float = 0.0,
) -> dict:
    """Run ``processes`` fresh children one after another, then more while ``more(ratios)`` says the
    noise leaves a check undecided, up to ``MAX_PROCESSES`` and ``budget_s`` seconds in all. Returns the
    report's ``gate`` section: the method, ``ratios`` {path: {batch size: median ratio}},
    ``process_ratios`` (each process's), ``noise`` (their log spread), each process's fastest calls, and
    the seconds taken (or ``error`` when a child failed: the gate cannot judge without its measurement)."""
    ours = [p for p in paths if not p.peer]
    req = {
        "model": model.to_dict(),
        "images": images,
        "crop": crop,
        "paths": [[p.backend, p.precision] for p in ours],
        "batch_sizes": list(sizes),
        "rounds": rounds,
        "seconds": TIMING_S,
    }
    out: dict = {**method(rounds, processes), "batch_sizes": list(sizes), "per_process": []}
    t0 = time.perf_counter()
    while (line := _next_process(out["per_process"], len(ours), rounds, processes, t0, more, budget_s)) is not None:
        step(line)
        child = _spawn(req, timeout)
        if "error" in child:
            return {**out, "error": f"gate timing process {len(out['per_process']) + 1}: {child['error']}"}
        out["per_process"].append(child)
    return _summary(out, t0)


def _next_process(
    done: list[dict],
    n_paths: int,
    rounds: int,
    processes: int,
    t0: float,
    more: Callable[[dict], bool] | None,
    budget_s: float,
) -> str | None:
    """The progress line for one more process after those ``done``, or None when they are enough: the
    ``processes`` asked for, then more only while ``more`` says the noise leaves a check undecided and the
    next one fits ``MAX_PROCESSES`` and ``budget_s`` (at the mean time per process so far)."""
    n = len(done)
    if n < processes:
        return f"gate timing: fresh process {n + 1}/{processes} ({n_paths} paths, >= {rounds} paired rounds, 1 thread)"
    elapsed = time.perf_counter() - t0
    if (
        n >= MAX_PROCESSES
        or elapsed * (n + 1) / n > budget_s
        or more is None
        or not more(process_ratios([c["fastest"] for c in done]))
    ):
        return None
    return (
        f"gate timing: the noise leaves a check undecided; one more process ({n + 1}, up to "
        f"{MAX_PROCESSES} within {budget_s:.0f} s)"
    )


def _summary(out: dict, t0: float) -> dict:
    """``out`` with its processes' ratios, their medians and noise, what they skipped, and the seconds."""
    per = process_ratios([c["fastest"] for c in out["per_process"]])
    out["processes"] = len(out["per_process"])
    out["process_ratios"] = per
    out["ratios"] = {name: {bs: median(r) for bs, r in by.items()} for name, by in per.items()}
    out["noise"] = {name: {bs: log_spread(r) for bs, r in by.items()} for name, by in per.items()}
    out["skipped"] = {k: v for c in out["per_process"] for k, v in c.get("skipped", {}).items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def process_ratios(per_process: list[dict]) -> dict:
    """{path: {batch size: [fastest path call s, fastest reference call s]}} of each process -> {path: {batch
    size: [each process's ratio]}}, over what every process measured."""
    out: dict = {}
    for name in dict.fromkeys(n for r in per_process for n in r):
        for bs in dict.fromkeys(bs for r in per_process for bs in r.get(name, {})):
            pairs = [r[name][bs] for r in per_process if bs in r.get(name, {})]
            if len(pairs) == len(per_process):
                out.setdefault(name, {})[bs] = [c / ref for c, ref in pairs]
    return out


def undecided(ratios: Mapping, baseline: Sequence[Mapping] | None, tolerance: float) -> bool:
    """Whether another process could decide something: against a baseline (``--gate``), a check whose
    change lies between the tolerance and the noise floor; saving one, a check whose own floor is above
    the tolerance. ``ratios`` is :func:`process_ratios`'s; ``baseline`` the baseline's entries."""
    if baseline is None:
        return any(self_floor(r) > tolerance for by in ratios.values() for r in by.values())
    old = {b["fullname"]: b.get("extra_info", {}).get("process_ratios") for b in baseline}
    return any(
        old.get(f"{name} b{bs}") and judge(old[f"{name} b{bs}"], r, tolerance).verdict == INCONCLUSIVE
        for name, by in ratios.items()
        for bs, r in by.items()
    )


def rounds_for_time(fn, ref, x, at_least: int, seconds: float) -> int:
    """Paired rounds for one path and batch size: ``at_least``, or as many as fill ``seconds`` (from one
    timed round), at most MAX_ROUNDS. A fast model's fastest call over 32 calls still moves with the
    process; over a second of calls it settles (measured: docs/benchmarks.md)."""
    from ipex_resnet.benchmarking.timing import rounds_for

    t0 = time.perf_counter()
    ref(x)
    fn(x)
    return rounds_for(time.perf_counter() - t0, seconds, at_least, MAX_ROUNDS)


def _spawn(req: dict, timeout: float) -> dict:
    from ipex_resnet.benchmarking.isolated import json_child

    return json_child(__name__, req, timeout, env=child_env())


def child_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A gate process's environment: one thread, and glibc's malloc kept from handing memory back to the
    kernel (``MALLOC_*_THRESHOLD_``, unless the user set them). By default glibc serves large blocks
    with fresh ``mmap`` pages and moves that threshold as the process frees them, so whether a model's
    activations page-fault on every call depends on the process's allocation history: measured on a
    ~1 ms CNN at batch 8, 4,600-6,500 page faults per eager call and a fastest call of 8 or 17 ms in
    two processes of the same code; with the thresholds fixed, 0 faults and 5.4-6.6 ms."""
    env = dict(environ, OMP_NUM_THREADS=str(THREADS))
    for key in MALLOC_FIXED:
        env.setdefault(key, MALLOC_FIXED[key])
    return env


def _child(req: dict) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    t_start = time.perf_counter()
    from ipex_resnet.benchmarking.inputs import batch, jpegs
    from ipex_resnet.benchmarking.paths import Workspace, build_path
    from ipex_resnet.benchmarking.timing import paired_ratio, slowdown_fraction

    images = jpegs(req["images"], 32) if req.get("images") else None
    ws = Workspace(ModelSpec.from_dict(req["model"]), images, crop=req["crop"])
    slow = slowdown_fraction()
    specs = [PathSpec(b, p, False) for b, p in req["paths"]]
    ref_spec = next((s for s in specs if s.name == REFERENCE), PathSpec("eager", "fp32", False))
    ref = build_path(ref_spec, ws, THREADS).runner
    built, skipped = {}, {}
    for spec in specs:
        if spec.name == REFERENCE:
            continue
        try:
            built[spec.name] = build_path(spec, ws, THREADS, slowdown=slow).runner
        except Exception as exc:
            skipped[spec.name] = f"failed to load: {first_line(exc)}"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(THREADS)
    loaded_s = time.perf_counter() - t_start
    fastest: dict[str, dict[str, list[float]]] = {}
    rounds: dict[str, dict[str, int]] = {}
    for bs in req["batch_sizes"]:
        x = batch(bs, ws.crop, seed=bs)
        for fn in (ref, *built.values()):
            for _ in range(2):
                fn(x)  # warm-up (a new batch size may allocate or specialise)
        for name, fn in built.items():
            n = rounds_for_time(fn, ref, x, req["rounds"], req.get("seconds", TIMING_S))
            _, cand, ref_s = paired_ratio(fn, ref, x, n)
            fastest.setdefault(name, {})[str(bs)] = [min(cand), min(ref_s)]
            rounds.setdefault(name, {})[str(bs)] = n
    ws.cleanup()
    return {
        "fastest": fastest,
        "rounds": rounds,
        "skipped": skipped,
        "load_s": loaded_s,
        "seconds": time.perf_counter() - t_start,
    }


__all__ = [
    "ESTIMATOR",
    "MAX_PROCESSES",
    "THREADS",
    "TIMING_S",
    "batch_sizes",
    "child_env",
    "measure",
    "method",
    "process_ratios",
    "undecided",
]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
