"""Does the gate catch a 10% slowdown, and does it stay quiet on unchanged code? Measure it.

    python bench/gate_experiment.py --workers 3 --trials 12 --slowdown 0.10 --output docs/gate-experiment-ipex.json

Each worker is a fresh process (so process-to-process variance is included, as between a saved
baseline and a CI run) that loads the optimized paths at the plan's precision plus the eager FP32
reference, then alternates *unchanged* and *slowed* (``inject_slowdown``: every call of the
candidate 10% slower) trials. A trial is exactly what one gate benchmark does in ``--bench-quick``
mode: ``--rounds`` rounds of (reference call, candidate call), then the ratio estimators of
:func:`ipex_resnet.benchmarking.timing.ratio_estimates`.

Scoring mimics the gate: a *run* (one trial index, all paths) fails if any path's ratio exceeds its
baseline by the tolerance. Baselines are each worker's first unchanged trial; every trial of every
*other* worker is judged against it. Catch rate = failing slowed runs; false-alarm rate = failing
unchanged runs. Every estimator x tolerance is scored from the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOLERANCES = (0.02, 0.03, 0.04, 0.05, 0.06, 0.08)


def worker(trials: int, rounds: int, slowdown: float, backends: list[str] | None, threads: int | None) -> None:
    import torch

    from ipex_resnet import engines
    from ipex_resnet.benchmarking import timing as T
    from ipex_resnet.benchmarking.inputs import batch
    from ipex_resnet.benchmarking.matrix import REFERENCE, matrix
    from ipex_resnet.benchmarking.paths import Workspace, build_path
    from ipex_resnet.cpu import probe
    from ipex_resnet.policy import make_plan

    warnings.simplefilter("ignore")
    cpu = probe()
    paths, _ = matrix(cpu, backends, peers=[])
    avail = engines.availability()
    auto = {p.backend: make_plan(cpu, p.backend, "auto", 1, availability=avail, env={}).precision for p in paths}
    paths = [p for p in paths if p.name == REFERENCE or (p.backend != "eager" and p.precision == auto[p.backend])]
    ws = Workspace()
    built = {p.name: build_path(p, ws, threads) for p in paths}
    if threads:
        torch.set_num_threads(threads)
    ref = built[REFERENCE].runner
    x = batch(1, ws.crop)
    for b in built.values():
        for _ in range(2):
            b.runner(x)
    clock = time.perf_counter
    for t in range(trials * 2):
        slowed = t % 2 == 1
        out = {"trial": t // 2, "slowed": slowed, "ratios": {}}
        for name, b in built.items():
            cand = T.inject_slowdown(b.runner, slowdown) if slowed and name != REFERENCE else b.runner
            ct, rt = [], []
            for _ in range(rounds):  # the order of pytest-benchmark's pedantic(setup=...) rounds
                t0 = clock()
                ref(x)
                rt.append(clock() - t0)
                t0 = clock()
                cand(x)
                ct.append(clock() - t0)
            out["ratios"][name] = T.ratio_estimates(ct, rt)
        print(json.dumps(out), flush=True)


def score(workers: list[list[dict]], estimator: str, tol: float) -> tuple[float, float, int, int]:
    fails = {False: [], True: []}
    for wi, base_trials in enumerate(workers):
        base = next(t for t in base_trials if not t["slowed"])["ratios"]
        for wj, trials in enumerate(workers):
            if wj == wi:
                continue
            for t in trials:
                bad = any(r[estimator] > base[name][estimator] * (1 + tol)
                          for name, r in t["ratios"].items() if name in base and name != "eager/fp32")
                fails[t["slowed"]].append(bad)
    slow, same = fails[True], fails[False]
    return (sum(slow) / len(slow) if slow else float("nan"), sum(same) / len(same) if same else float("nan"),
            len(slow), len(same))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=3, help="fresh processes (default 3)")
    ap.add_argument("--trials", type=int, default=12, help="unchanged + slowed trial pairs per worker (default 12)")
    ap.add_argument("--rounds", type=int, default=16, help="rounds per trial, as --bench-quick (default 16)")
    ap.add_argument("--slowdown", type=float, default=0.10, help="injected slowdown (default 0.10 = 10%%)")
    ap.add_argument("--backends", default=None, help="comma-separated backends (default: all that run)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the plan's)")
    ap.add_argument("--output", default=None, help="write raw trials and the rates here (JSON)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    backends = args.backends.split(",") if args.backends else None
    if args.worker:
        worker(args.trials, args.rounds, args.slowdown, backends, args.threads)
        return 0

    from ipex_resnet.benchmarking import options as O
    from ipex_resnet.benchmarking import timing as T
    from ipex_resnet.benchmarking.machine import versions

    t0 = time.time()
    results: list[list[dict]] = []
    for w in range(args.workers):
        cmd = [sys.executable, __file__, "--worker", "--trials", str(args.trials), "--rounds", str(args.rounds),
               "--slowdown", str(args.slowdown)] + (["--backends", args.backends] if args.backends else []) \
            + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            print(f"error: worker {w} failed: {proc.stderr.strip()[-500:]}", file=sys.stderr)
            return 2
        trials = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        results.append(trials)
        print(f"worker {w + 1}/{args.workers}: {len(trials)} trials ({time.time() - t0:.0f} s)", file=sys.stderr)

    table = {}
    print(f"injected slowdown {args.slowdown:.0%}; threads {args.threads or 'plan'}; {args.workers} processes x {args.trials} trial pairs x "
          f"{args.rounds} rounds; runs judged against other processes' baselines")
    print(f"{'estimator':<10}" + "".join(f"  tol {t:>4.0%}: catch/false" for t in TOLERANCES))
    for est in T.RATIO_ESTIMATORS:
        row = {}
        cells = []
        for tol in TOLERANCES:
            catch, false, n_slow, n_same = score(results, est, tol)
            row[f"{tol:.2f}"] = {"catch": catch, "false_alarm": false, "n_slowed": n_slow, "n_unchanged": n_same}
            cells.append(f"  {catch:>12.0%} / {false:<7.0%}")
        table[est] = row
        print(f"{est:<10}" + "".join(cells))
    # Noise: how much each path's unchanged ratio wanders between trials and processes.
    noise = {}
    for est in T.RATIO_ESTIMATORS:
        per_path: dict[str, list[float]] = {}
        for trials in results:
            for t in trials:
                if not t["slowed"]:
                    for name, r in t["ratios"].items():
                        per_path.setdefault(name, []).append(r[est])
        noise[est] = {name: {"median": T.quantile(v, .5), "cv": (T.quantile(v, .84) - T.quantile(v, .16)) / 2 / T.quantile(v, .5)}
                      for name, v in per_path.items()}
    print("unchanged ratio spread (half the 16-84% range / median):")
    for est, paths in noise.items():
        print(f"  {est:<8} " + ", ".join(f"{n} {v['median']:.3f} +-{v['cv']:.1%}" for n, v in paths.items()))
    print(f"gate default: estimator {T.GATE_ESTIMATOR}, tolerance {O.TIME_TOLERANCE:.0%}: "
          f"catch {table[T.GATE_ESTIMATOR].get(f'{O.TIME_TOLERANCE:.2f}', {}).get('catch', float('nan')):.0%}, "
          f"false alarms {table[T.GATE_ESTIMATOR].get(f'{O.TIME_TOLERANCE:.2f}', {}).get('false_alarm', float('nan')):.0%} "
          f"({time.time() - t0:.0f} s)")
    if args.output:
        Path(args.output).write_text(json.dumps({
            "slowdown": args.slowdown, "workers": args.workers, "threads": args.threads, "trials": args.trials, "rounds": args.rounds,
            "gate_estimator": T.GATE_ESTIMATOR, "gate_tolerance": O.TIME_TOLERANCE, "rates": table,
            "noise": noise, "versions": versions(), "seconds": time.time() - t0, "raw": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
