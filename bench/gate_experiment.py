"""Does the gate catch slowdowns and stay quiet on unchanged code, on any model? Measure it.

    python bench/gate_experiment.py collect --model resnet18 --paths openvino/int8 --processes 24 \
        --output docs/gate-experiment/resnet18-latest.json
    python bench/gate_experiment.py score docs/gate-experiment/*.json

``collect`` runs the gate's own timing process (:mod:`ipex_resnet.benchmarking.gate_timing`: fresh,
one thread, ``--rounds`` paired rounds of (eager FP32 reference call, path call) per path and batch
size) ``--processes`` times, one after the other, and keeps each process's fastest calls: exactly what
``ipex-resnet bench --save-baseline`` / ``--gate`` measure, so process-to-process and drift-over-time
variation are both in the data.

``score`` replays gates on that data with the package's own verdict
(:func:`ipex_resnet.benchmarking.gate.judge_time`): a baseline of ``GATE_PROCESSES`` processes and a
run of ``GATE_PROCESSES`` *other* processes, the run taking more of the remaining processes while the
verdict is inconclusive (up to the gate's process cap), drawn at random ``--draws`` times per condition.
A slowed run multiplies the run's fastest path calls by 1 + s: the injected slowdown
(``IPEX_RESNET_BENCH_SLOWDOWN``) is a spin loop of exactly that fraction of each call, so the arithmetic
is the same. Per model, path and batch it prints: false REGRESSION and inconclusive rates on unchanged
code, the catch rate of 5% and 10% slowdowns, the noise floor, and the processes a gate took.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gate_models


def collect(args) -> int:
    from ipex_resnet.benchmarking import gate_timing
    from ipex_resnet.benchmarking.inputs import crop_size
    from ipex_resnet.benchmarking.machine import versions
    from ipex_resnet.benchmarking.matrix import PathSpec
    from ipex_resnet.hardware.cpu import probe
    from ipex_resnet.models.spec import ModelSpec

    model = ModelSpec.from_options(args.model, "none", preset=args.preset)
    crop = crop_size(model)
    specs = [PathSpec(*p.split("/"), False) for p in args.paths.split(",")] + [PathSpec("eager", "fp32", False)]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    t0 = time.time()
    out = gate_timing.measure(
        specs,
        model=model,
        images=None,
        crop=crop,
        sizes=sizes,
        rounds=args.rounds,
        processes=args.processes,
        step=lambda m: print(f"[{time.time() - t0:.0f} s] {m}", file=sys.stderr, flush=True),
    )
    if "error" in out:
        print(f"error: {out['error']}", file=sys.stderr)
        return 1
    doc = {
        "model": args.model,
        "label": args.label or args.model,
        "paths": args.paths.split(","),
        "batch_sizes": sizes,
        "rounds": args.rounds,
        "cpu": probe().model_name,
        "versions": versions(),
        "seconds": time.time() - t0,
        "processes": [p["fastest"] for p in out["per_process"]],
        "load_s": [p["load_s"] for p in out["per_process"]],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{args.output}: {len(doc['processes'])} processes in {doc['seconds']:.0f} s", file=sys.stderr)
    return 0


def pooled_min_ratio(fastest: list[tuple[float, float]]) -> float:
    """The previous gate's ratio ("pooled-min"): the fastest path call of all the processes over the
    fastest reference call of all."""
    return min(c for c, _ in fastest) / min(r for _, r in fastest)


def replay(
    pairs: list[list[float]], slow: float, tol: float, z: float, k: int, k_max: int, rng: random.Random
) -> tuple[str, int, int, float, str]:
    """One gate on random processes: (verdict, baseline processes, run processes, floor, the old gate's
    verdict: pooled fastest calls of ``k`` processes each, no floor)."""
    from ipex_resnet.benchmarking import noise as N

    order = rng.sample(range(len(pairs)), len(pairs))
    ratio = [c / r for c, r in pairs]
    base = [ratio[i] for i in order[:k]]
    rest = order[k:]
    while N.self_floor(base, z) > tol and len(base) < k_max and len(rest) > k:
        base.append(ratio[rest.pop(0)])  # --save-baseline takes more processes while its own floor is high
    run = [ratio[i] * (1 + slow) for i in rest[:k]]
    rest = rest[k:]
    j = N.judge(base, run, tol, z)
    while j.verdict == N.INCONCLUSIVE and len(run) < k_max and rest:
        run.append(ratio[rest.pop(0)] * (1 + slow))
        j = N.judge(base, run, tol, z)
    old_base = pooled_min_ratio([pairs[i] for i in order[:k]])
    old_run = pooled_min_ratio([(pairs[i][0] * (1 + slow), pairs[i][1]) for i in order[len(order) - k :]])
    old = N.REGRESSION if old_run > old_base * (1 + tol) else N.PASS
    return j.verdict, len(base), len(run), j.floor, old


def score(args) -> int:
    from ipex_resnet.benchmarking import noise as N
    from ipex_resnet.benchmarking.gate_timing import MAX_PROCESSES
    from ipex_resnet.benchmarking.options import GATE_BUDGET_S, GATE_PROCESSES, TIME_TOLERANCE

    tol = TIME_TOLERANCE if args.tolerance is None else args.tolerance
    z = N.NOISE_Z if args.z is None else args.z
    rng = random.Random(0)
    head = (
        "| model | stack | path | batch | processes | noise (sd of log ratio) | old gate: false REGRESSION | "
        "false REGRESSION | inconclusive | caught 5% | caught 10% | 10% passed | median floor | processes used "
        "(baseline / run, unchanged) | s per gate process |"
    )
    print(
        f"tolerance {tol:.1%}, Z {z:g}, {args.draws} random gates per condition, baseline and run of "
        f"{GATE_PROCESSES} processes, then more while the noise leaves it undecided, up to {MAX_PROCESSES}, "
        f"{GATE_BUDGET_S:g} s per path, and half the processes collected"
    )
    print(head)
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for file in args.files:
        doc = json.loads(Path(file).read_text())
        ipex = doc["versions"].get("intel_extension_for_pytorch")
        stack = f"IPEX {ipex}" if ipex else f"torch {doc['versions'].get('torch')}"
        procs = doc["processes"]
        per_process_s = doc["seconds"] / len(procs)
        k_max = max(
            GATE_PROCESSES, min(MAX_PROCESSES, len(procs) // 2, int(GATE_BUDGET_S * len(doc["paths"]) / per_process_s))
        )
        for path in procs[0]:
            for bs in procs[0][path]:
                pairs = [p[path][bs] for p in procs]
                spread = N.log_spread([c / r for c, r in pairs])
                rows = {}
                for slow in (0.0, 0.05, 0.10):
                    rows[slow] = [replay(pairs, slow, tol, z, GATE_PROCESSES, k_max, rng) for _ in range(args.draws)]
                same = rows[0.0]

                def rate(rs, v, idx=0):
                    return sum(r[idx] == v for r in rs) / len(rs)

                print(
                    f"| {doc['label']} | {stack} | {path} | {bs} | {len(procs)} | {spread:.1%} | "
                    f"{rate(same, N.REGRESSION, 4):.1%} | {rate(same, N.REGRESSION):.1%} | "
                    f"{rate(same, N.INCONCLUSIVE):.1%} | {rate(rows[0.05], N.REGRESSION):.0%} | "
                    f"{rate(rows[0.10], N.REGRESSION):.0%} | {rate(rows[0.10], N.PASS):.0%} | "
                    f"{sorted(r[3] for r in same)[len(same) // 2]:.1%} | "
                    f"{sum(r[1] for r in same) / len(same):.1f} / {sum(r[2] for r in same) / len(same):.1f} | "
                    f"{per_process_s:.0f} |"
                )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="run the gate's timing process N times; keep every process's fastest calls")
    c.add_argument("--model", required=True, help="torchvision name or package.module:attr")
    c.add_argument("--label", default=None, help="the model's name in the tables (default: --model)")
    c.add_argument("--preset", default=None, help="a preset JSON file (the user's model's transforms)")
    c.add_argument("--paths", required=True, help="ENGINE/PRECISION,... (the eager FP32 reference is added)")
    c.add_argument("--batch-sizes", default="1,8", help="default 1,8 (the gate's: 1 and the next report size)")
    c.add_argument("--rounds", type=int, default=32, help="paired rounds per process (default 32, the gate's)")
    c.add_argument("--processes", type=int, default=24, help="fresh processes (default 24)")
    c.add_argument("--output", required=True)
    s = sub.add_parser("score", help="replay gates on collected data")
    s.add_argument("files", nargs="+")
    s.add_argument("--draws", type=int, default=400, help="random gates per condition (default 400)")
    s.add_argument("--tolerance", type=float, default=None, help="default: the gate's")
    s.add_argument("--z", type=float, default=None, help="the noise floor's Z (default: the gate's)")
    args = ap.parse_args()
    return collect(args) if args.cmd == "collect" else score(args)


if __name__ == "__main__":
    sys.exit(main())
