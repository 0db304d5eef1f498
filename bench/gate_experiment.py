"""Does the gate catch a 5% (and 10%) slowdown, and does it stay quiet on unchanged code? Measure it.

    python bench/gate_experiment.py --workers 6 --trials 4 --rounds 64 --slowdowns 0.05,0.10 --threads 1 \
        --backends openvino,eager --output docs/gate-experiment-latest-5pct.json

Each worker is a fresh process (so process-to-process variance is included, as between a saved
baseline and a CI run) that loads the optimized paths at the plan's precision plus the eager FP32
reference, then cycles through *unchanged* and *slowed* trials (``inject_slowdown``: every call of the
candidate that much slower). A trial is ``--rounds`` rounds of (reference call, candidate call), the
order of the gate's benchmarks; every round's two times are kept, so one data set scores the gate at
every number of rounds up to ``--rounds`` and with every estimator.

Scoring mimics a gate run made of ``k`` fresh processes (the package gate, ``ipex-resnet bench --gate``:
``pooled-min``, 32 rounds, k = 3; ``benchmarking/gate_timing.py``): a baseline combines ``k`` workers'
first unchanged trials; a run combines ``k`` *other* workers' j-th trials of one condition (a
per-process estimator by the median over the workers; ``pooled-min`` as the fastest candidate call of
all over the fastest reference call of all); it fails if any path's ratio exceeds the
baseline's by the tolerance. Every disjoint choice of baseline and run workers is scored. Catch rate
= failing slowed runs; false-alarm rate = failing unchanged runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOLERANCES = (0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.08)
# per-process estimators (T.RATIO_ESTIMATORS, combined over processes by their median) and the package
# gate's: the fastest calls pooled over the processes (T.pooled_min_ratio)
POOLED = "pooled-min"


def worker(trials: int, rounds: int, slowdowns: list[float], backends: list[str] | None, threads: int | None) -> None:
    import torch

    from ipex_resnet import engines
    from ipex_resnet.benchmarking import timing as T
    from ipex_resnet.benchmarking.inputs import batch
    from ipex_resnet.benchmarking.matrix import REFERENCE, matrix
    from ipex_resnet.benchmarking.paths import Workspace, build_path
    from ipex_resnet.hardware.cpu import probe
    from ipex_resnet.core.policy import make_plan

    warnings.simplefilter("ignore")
    t_load = time.perf_counter()
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
    print(json.dumps({"load_s": time.perf_counter() - t_load}), flush=True)
    clock = time.perf_counter
    conditions = [0.0] + slowdowns
    for t in range(trials * len(conditions)):
        slow = conditions[t % len(conditions)]
        out = {"trial": t // len(conditions), "slowdown": slow, "slowed": slow > 0, "times": {}}
        t0 = clock()
        for name, b in built.items():
            cand = T.inject_slowdown(b.runner, slow) if slow and name != REFERENCE else b.runner
            _, ct, rt = T.paired_ratio(cand, ref, x, rounds)  # the package gate's rounds (reference, then path)
            out["times"][name] = {"cand": ct, "ref": rt}
        out["seconds"] = clock() - t0
        print(json.dumps(out), flush=True)


def ratio(trial: dict, name: str, est: str, rounds: int) -> float:
    from ipex_resnet.benchmarking import timing as T

    t = trial["times"][name]
    return T.ratio_estimates(t["cand"][:rounds], t["ref"][:rounds])[est]


def combined(trials: list[dict], name: str, est: str, rounds: int) -> float:
    """The ratio of a gate made of these processes' trials."""
    from statistics import median

    from ipex_resnet.benchmarking import timing as T

    if est == POOLED:
        return T.pooled_min_ratio([(min(t["times"][name]["cand"][:rounds]), min(t["times"][name]["ref"][:rounds]))
                                   for t in trials])
    return median(ratio(t, name, est, rounds) for t in trials)


def splits(n_workers: int, k: int):
    """Every (baseline workers, run workers) pair of disjoint k-subsets."""
    for base in itertools.combinations(range(n_workers), k):
        rest = [w for w in range(n_workers) if w not in base]
        for run in itertools.combinations(rest, k):
            yield base, run


def score(workers: list[list[dict]], est: str, tol: float, rounds: int, k: int, slowdown: float,
          reference: str = "eager/fp32") -> tuple[float, float, int, int]:
    """(catch rate, false-alarm rate, runs slowed, runs unchanged) of a gate of ``k`` processes."""
    names = [n for n in workers[0][0]["times"] if n != reference]
    by = [{(t["slowdown"], t["trial"]): t for t in w} for w in workers]
    n_trials = 1 + max(t["trial"] for t in workers[0])
    fails: dict[bool, list[bool]] = {False: [], True: []}
    for base_w, run_w in splits(len(workers), k):
        base = {n: combined([by[w][(0.0, 0)] for w in base_w], n, est, rounds) for n in names}
        for cond in (0.0, slowdown):
            for j in range(n_trials):
                if any((cond, j) not in by[w] for w in run_w):
                    continue
                run = {n: combined([by[w][(cond, j)] for w in run_w], n, est, rounds) for n in names}
                fails[cond > 0].append(any(run[n] > base[n] * (1 + tol) for n in names))
    slow, same = fails[True], fails[False]
    return (sum(slow) / len(slow) if slow else float("nan"), sum(same) / len(same) if same else float("nan"),
            len(slow), len(same))


def run_workers(args) -> tuple[list[list[dict]], list[float]]:
    """Each worker in its own fresh process, one after the other; (their trials, their load seconds)."""
    results, loads = [], []
    t0 = time.time()
    for w in range(args.workers):
        cmd = [sys.executable, __file__, "--worker", "--trials", str(args.trials), "--rounds", str(args.rounds),
               "--slowdowns", args.slowdowns] + (["--backends", args.backends] if args.backends else []) \
            + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            raise SystemExit(f"error: worker {w} failed: {proc.stderr.strip()[-500:]}")
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        loads.append(lines[0]["load_s"])
        results.append(lines[1:])
        print(f"worker {w + 1}/{args.workers}: {len(lines) - 1} trials ({time.time() - t0:.0f} s)", file=sys.stderr)
    return results, loads


def rates(results: list[list[dict]], slowdowns: list[float], rounds_options: list[int], ks: list[int]) -> list[dict]:
    """Every estimator x rounds x processes x tolerance, scored for each slowdown."""
    from ipex_resnet.benchmarking import timing as T

    rows = []
    for est in (*T.RATIO_ESTIMATORS, POOLED):
        for rounds in rounds_options:
            for k in ks:
                for tol in TOLERANCES:
                    row = {"estimator": est, "rounds": rounds, "processes": k, "tolerance": tol}
                    for slow in slowdowns:
                        catch, false, n_slow, n_same = score(results, est, tol, rounds, k, slow)
                        row[f"catch_{slow:.2f}"], row["false_alarm"] = catch, false
                        row[f"n_{slow:.2f}"], row["n_unchanged"] = n_slow, n_same
                    rows.append(row)
    return rows


def gate_seconds(results: list[list[dict]], loads: list[float], rounds: int, k: int) -> float:
    """What one gate run of ``k`` processes x ``rounds`` rounds costs, per path, from the measured times."""
    per_round = sum(sum(t["ref"]) + sum(t["cand"]) for w in results for tr in w for t in tr["times"].values()) \
        / sum(len(t["ref"]) for w in results for tr in w for t in tr["times"].values())
    return k * (sum(loads) / len(loads) + rounds * per_round)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=6, help="fresh processes (default 6)")
    ap.add_argument("--trials", type=int, default=4, help="trials per condition per worker (default 4)")
    ap.add_argument("--rounds", type=int, default=64, help="rounds per trial (default 64; fewer are scored too)")
    ap.add_argument("--slowdowns", default="0.05,0.10", help="injected slowdowns (default 0.05,0.10)")
    ap.add_argument("--backends", default=None, help="comma-separated backends (default: all that run)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the plan's)")
    ap.add_argument("--output", default=None, help="write raw trials and the rates here (JSON)")
    ap.add_argument("--rescore", default=None, metavar="JSON", help="score the raw trials of an earlier --output")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    slowdowns = [float(v) for v in args.slowdowns.split(",")]
    backends = args.backends.split(",") if args.backends else None
    if args.worker:
        worker(args.trials, args.rounds, slowdowns, backends, args.threads)
        return 0

    from ipex_resnet.benchmarking.machine import versions

    t0 = time.time()
    if args.rescore:
        doc = json.loads(Path(args.rescore).read_text())
        results, loads, args.rounds, args.workers = doc["raw"], doc["load_s"], doc["rounds"], doc["workers"]
    else:
        results, loads = run_workers(args)
    rounds_options = sorted({r for r in (16, 32, args.rounds) if r <= args.rounds})
    ks = [k for k in (1, 2, 3) if 2 * k <= args.workers]
    table = rates(results, slowdowns, rounds_options, ks)
    print(f"slowdowns {', '.join(f'{s:.0%}' for s in slowdowns)}; threads {args.threads or 'plan'}; {args.workers} "
          f"processes x {args.trials} trials per condition x {args.rounds} rounds")
    print("estimator  rounds procs   tol   gate s/path  " + "  ".join(f"catch {s:.0%}" for s in slowdowns) + "  false  runs")
    for row in table:
        sec = gate_seconds(results, loads, row["rounds"], row["processes"])
        row["gate_seconds_per_path"] = sec
        print(f"{row['estimator']:<10} {row['rounds']:>6} {row['processes']:>5} {row['tolerance']:>5.1%} {sec:>12.0f}  "
              + "  ".join(f"{row[f'catch_{s:.2f}']:>9.0%}" for s in slowdowns)
              + f"  {row['false_alarm']:>5.0%}  {row['n_unchanged']}")
    if args.output and not args.rescore:
        Path(args.output).write_text(json.dumps({
            "slowdowns": slowdowns, "workers": args.workers, "threads": args.threads, "trials": args.trials,
            "rounds": args.rounds, "rates": table, "load_s": loads, "versions": versions(),
            "seconds": time.time() - t0, "raw": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
