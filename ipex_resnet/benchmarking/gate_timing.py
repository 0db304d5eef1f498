"""The gate's time measurement: each of our paths' ratio to the eager FP32 reference, from paired calls
in fresh single-threaded processes, pooled over those processes.

Design, from ``bench/gate_experiment.py`` (docs/benchmarks.md, "Measured: 5% slowdowns"): a process runs
``rounds`` rounds of (reference call, path call) per path and batch size and reports the fastest call
of each; the gate's ratio is the fastest path call of all the processes over the fastest reference call
of all (:func:`~ipex_resnet.benchmarking.timing.pooled_min_ratio`). Noise only ever adds time; a process's
own placement and allocator state move its ratios by a few percent, and pooling lets the best-placed
process decide. One process false-alarms on up to a fifth of unchanged runs at a 2% tolerance; three,
pooled, caught every 5% slowdown on both stacks with no false alarm. One thread: on a shared 2-core
machine a descheduled OpenMP thread stalls every barrier of a fast path more than the slow reference,
so even ratios move at 2 threads.

    python -m ipex_resnet.benchmarking.gate_timing '{"model": ..., "paths": [["openvino", "fp32"]], ...}'

prints one JSON line (the child side); :func:`measure` is the parent side.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence

from ipex_resnet.benchmarking.matrix import REFERENCE, PathSpec
from ipex_resnet.errors import first_line

ESTIMATOR = "pooled-min"
THREADS = 1
TIMEOUT_S = 1800  # per process; a cold artifact cache means compiles


def batch_sizes(report_sizes: Sequence[int]) -> list[int]:
    """What the gate times: batch 1 and the smallest batch above it (the largest costs minutes at one
    thread and shows the same kernels)."""
    above = [b for b in report_sizes if b > 1]
    return [1] + ([min(above)] if above else [])


def method(rounds: int, processes: int) -> dict:
    """How the ratios were measured, as recorded in the report and compared with a baseline's."""
    return {"estimator": ESTIMATOR, "threads": THREADS, "rounds": rounds, "processes": processes}


def measure(paths: Sequence[PathSpec], *, model: str, weights: str, preset: dict | None, images: str | None,
            crop: int, sizes: Sequence[int], rounds: int, processes: int,
            step: Callable[[str], None] = lambda msg: None, timeout: float = TIMEOUT_S) -> dict:
    """Run ``processes`` fresh children one after another; returns the report's ``gate`` section: the
    method, ``ratios`` {path: {batch size: pooled ratio}}, each process's fastest calls, and the seconds
    taken (or ``error`` when a child failed: the gate cannot judge without its measurement)."""
    ours = [p for p in paths if not p.peer]
    req = {"model": model, "weights": weights, "preset": preset, "images": images, "crop": crop,
           "paths": [[p.backend, p.precision] for p in ours], "batch_sizes": list(sizes), "rounds": rounds}
    out: dict = {**method(rounds, processes), "batch_sizes": list(sizes), "per_process": []}
    t0 = time.perf_counter()
    for i in range(processes):
        step(f"gate timing: fresh process {i + 1}/{processes} ({len(ours)} paths x {rounds} paired rounds, "
             f"1 thread)")
        child = _spawn(req, timeout)
        if "error" in child:
            return {**out, "error": f"gate timing process {i + 1}: {child['error']}"}
        out["per_process"].append(child)
    out["ratios"] = pooled_ratios([c["fastest"] for c in out["per_process"]])
    out["skipped"] = {k: v for c in out["per_process"] for k, v in c.get("skipped", {}).items()}
    out["seconds"] = time.perf_counter() - t0
    return out


def pooled_ratios(per_process: list[dict]) -> dict:
    """{path: {batch size: [fastest path call s, fastest reference call s]}} of each process -> {path: {batch
    size: pooled ratio}}, over what every process measured."""
    from ipex_resnet.benchmarking.timing import pooled_min_ratio

    out: dict = {}
    for name in dict.fromkeys(n for r in per_process for n in r):
        for bs in dict.fromkeys(bs for r in per_process for bs in r.get(name, {})):
            pairs = [r[name][bs] for r in per_process if bs in r.get(name, {})]
            if len(pairs) == len(per_process):
                out.setdefault(name, {})[bs] = pooled_min_ratio(pairs)
    return out


def _spawn(req: dict, timeout: float) -> dict:
    from ipex_resnet.benchmarking.isolated import json_child

    return json_child(__name__, req, timeout, env=dict(os.environ, OMP_NUM_THREADS=str(THREADS)))


def _child(req: dict) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    t_start = time.perf_counter()
    from ipex_resnet.benchmarking.inputs import batch, jpegs
    from ipex_resnet.benchmarking.paths import Workspace, build_path
    from ipex_resnet.benchmarking.timing import paired_ratio, slowdown_fraction

    images = jpegs(req["images"], 32) if req.get("images") else None
    ws = Workspace(req["model"], images, crop=req["crop"], weights=req.get("weights", "none"),
                   preset=req.get("preset"))
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
        except Exception as exc:  # noqa: BLE001 - one path failing must not sink the others
            skipped[spec.name] = f"failed to load: {first_line(exc)}"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(THREADS)
    loaded_s = time.perf_counter() - t_start
    fastest: dict[str, dict[str, list[float]]] = {}
    for bs in req["batch_sizes"]:
        x = batch(bs, ws.crop, seed=bs)
        for fn in (ref, *built.values()):
            for _ in range(2):
                fn(x)  # warm-up (a new batch size may allocate or specialise)
        for name, fn in built.items():
            _, cand, ref_s = paired_ratio(fn, ref, x, req["rounds"])
            fastest.setdefault(name, {})[str(bs)] = [min(cand), min(ref_s)]
    ws.cleanup()
    return {"fastest": fastest, "skipped": skipped, "load_s": loaded_s, "seconds": time.perf_counter() - t_start}


__all__ = ["ESTIMATOR", "THREADS", "batch_sizes", "measure", "method", "pooled_ratios"]


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)

