"""``backend="auto"`` by measurement: the first load on a machine builds every engine that can run
(through the artifact cache, so the work is kept), checks each against the FP32 eager reference,
times batch-1 latency, and keeps the fastest that agrees. The decision is cached under the cache root
keyed by the machine (CPU model, ISA, threads, library versions), the model, the weights and the
requested precision, and explained in the plan. ``IPEX_RESNET_BACKEND`` or an explicit backend
overrides it; ``IPEX_RESNET_AUTO=static`` (or ``load(measure=False)``) keeps the static rule.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from ipex_resnet import engines
from ipex_resnet.core.cache import digest, root
from ipex_resnet.core.keys import weights_id
from ipex_resnet.core.policy import AUTO, ENV_BACKEND, Plan, make_plan, requested_streams
from ipex_resnet.errors import IpexResnetError
from ipex_resnet.util.deps import dist_version
from ipex_resnet.util.files import write_json_atomic

ENV_AUTO = "IPEX_RESNET_AUTO"
TIMED_CALLS = 15
# Agreement with eager FP32, centered relative L2 of the logits. On real images (an accuracy budget's)
# a correct BF16 path of a model with real weights stays under 0.06 and INT8 under 0.15
# (EfficientNet-Lite1, docs/accuracy.md). Without images the input is seeded noise, on which the same
# correct BF16 paths reach 0.25-0.51: there the check only has to catch a broken engine, whose logits
# are unrelated to the reference (~1.4), so BF16 gets 0.75. INT8 is only measured with images.
TOLERANCE_IMAGES = {"fp32": 1e-3, "bf16": 0.1, "int8": 0.5}
TOLERANCE_NOISE = {"fp32": 1e-3, "bf16": 0.75}
CHECK_IMAGES = 8


def wanted(backend, measure: bool | None) -> bool:
    if measure is not None:
        return bool(measure)
    if backend is not None and str(backend).lower() != AUTO:
        return False
    if os.environ.get(ENV_BACKEND, "").strip().lower() not in ("", AUTO):
        return False
    return os.environ.get(ENV_AUTO, "measure").strip().lower() != "static"


def decision_key(cpu, model, weights, precision, threads_plan, model_id=None) -> dict:
    libs = {d: dist_version(d) for d in ("torch", "intel-extension-for-pytorch", "openvino", "onnxruntime")}
    return {
        "cpu": cpu.model_name,
        "isa": cpu.isa_level,
        "threads": threads_plan.threads,
        "versions": libs,
        "available": sorted(n for n, (ok, _) in engines.availability().items() if ok),
        "model": model if isinstance(model, str) else type(model).__name__,
        "weights": weights_id(model, weights, model_id),
        "precision": str(precision or AUTO).lower(),
    }


def _path(key: dict) -> Path:
    return root() / "decisions" / f"{digest(key)}.json"


def _centered_rel_l2(out, ref) -> float:
    import numpy as np

    out, ref = np.asarray(out, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    signal = ref - ref.mean(axis=0, keepdims=True)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(signal), 1e-12))


def _latency_ms(clf, x) -> float:
    import statistics

    clf(x)
    times = []
    for _ in range(TIMED_CALLS):
        t = time.perf_counter()
        clf(x)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def _candidates(cpu, precision, threads, budget) -> list[tuple[str, Plan | str]]:
    """``(row name, plan or the reason it cannot run)`` for every engine that runs here; with an
    accuracy budget, each INT8-capable engine's INT8 too."""
    avail = engines.availability()
    wanted = [(n, precision, n) for n, (ok, _) in avail.items() if ok]
    if budget is not None:
        wanted += [
            (n, "int8", f"{n}/int8") for n, (ok, _) in avail.items() if ok and "int8" in engines.get(n).precisions(cpu)
        ]
    out: list[tuple[str, Plan | str]] = []
    for name, prec, row in wanted:
        try:
            out.append((row, make_plan(cpu, name, prec, threads, availability=avail)))
        except IpexResnetError as exc:
            out.append((row, str(exc)))
    return out


class _Reference:
    """The eager FP32 reference, loaded once: its logits on a random batch and on the budget's images."""

    def __init__(self, cpu, threads, load_plan, budget):
        self.plan = make_plan(cpu, "eager", "fp32", threads, availability=engines.availability())
        self.load_plan, self.budget = load_plan, budget
        self.x = self.logits = self.budget_logits = None

    def prepare(self) -> None:
        """Load the reference and take its logits. Not guarded: what stops the reference (weights that
        cannot be fetched, a model that cannot be built) stops every engine, and is the user's to fix."""
        import numpy as np

        ref = self.load_plan(self.plan)
        if self.budget:  # real images: the check sees the activations the model was trained for
            self.x = np.stack([np.asarray(ref.preprocess(p)) for p in self.budget.paths[:CHECK_IMAGES]])
        else:
            crop = ref.preprocessor.crop_size
            self.x = np.random.default_rng(0).standard_normal((4, 3, crop, crop), dtype=np.float32)
        self.logits = ref(self.x)
        self.budget_logits = self.budget.logits(ref) if self.budget else None

    def measure_against(self, clf) -> tuple[float, dict]:
        acc = self.budget.judge(self.budget.logits(clf), self.budget_logits) if self.budget else {}
        return _centered_rel_l2(clf(self.x), self.logits), acc


def measure(cpu, static_plan, precision, threads, load_plan, budget=None) -> dict:
    """Build, check and time every engine that can run (and INT8 within an accuracy ``budget``);
    returns the decision record."""
    from tqdm import tqdm

    ref = _Reference(cpu, threads, load_plan, budget)
    ref.prepare()
    rows: dict[str, dict] = {}
    candidates = _candidates(cpu, precision, threads, budget)
    terminal = sys.stderr.isatty()  # a bar on a terminal; one line per step in a log or a pipe
    bar = tqdm(candidates, desc="measuring engines", unit="path", file=sys.stderr, disable=not terminal, leave=False)
    for i, (row, plan) in enumerate(bar, 1):
        if isinstance(plan, str):
            rows[row] = {"skipped": plan}
            continue
        bar.set_postfix_str(f"{plan.backend}/{plan.precision}")
        if not terminal:
            print(
                f"ipex-resnet: measuring engines ({i}/{len(candidates)}): {plan.backend}/{plan.precision}",
                file=sys.stderr,
                flush=True,
            )
        try:
            clf = load_plan(plan)
            err, acc = ref.measure_against(clf)
            ms = _latency_ms(clf, ref.x[:1])
        except Exception as exc:
            rows[row] = {"precision": plan.precision, "failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        tolerance = (TOLERANCE_IMAGES if budget else TOLERANCE_NOISE).get(plan.precision, 0.1)
        ok = err <= tolerance and (budget is None or acc["drop_pts"] <= budget.max_drop_pts)
        rows[row] = {
            "precision": plan.precision,
            "b1_ms": round(ms, 3),
            "rel_err": float(f"{err:.3g}"),
            **acc,
            "agrees": ok,
        }
    bar.close()
    return _decide(static_plan, rows, budget)


def _decide(static_plan, rows: dict[str, dict], budget) -> dict:
    good = {n: r for n, r in rows.items() if r.get("agrees")}
    if not good:
        return {"backend": static_plan.backend, "engines": rows, "why": "no engine could be measured"}
    best = min(good, key=lambda n: good[n]["b1_ms"])
    within = f" within {budget.max_drop_pts:g} point(s) of {budget.measure}" if budget else ""
    return {
        "backend": best.split("/")[0],
        "precision": good[best]["precision"],
        "engines": rows,
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "why": f"fastest batch-1 latency that agrees with eager fp32{within} ({good[best]['b1_ms']:.2f} ms)",
    }


STREAMS_SECONDS = 1.0  # timed per candidate stream count
STREAMS_GAIN = 1.10  # more streams must beat one by this much: one stream answers a lone call fastest


def measure_streams(plan, load_plan) -> dict:
    """Batch-1 throughput with every stream busy (twice as many calls in flight as streams) and the
    lone-call latency, for each stream count that divides the plan's threads; the most throughput
    wins if it beats one stream by :data:`STREAMS_GAIN`."""
    import numpy as np

    from ipex_resnet.engines.streams import stream_counts

    rows: dict[str, dict] = {}
    for n in stream_counts(plan.threads):
        clf = load_plan(dataclasses.replace(plan, streams=n))
        try:
            crop = clf.preprocessor.crop_size
            x = np.zeros((1, 3, crop, crop), dtype=np.float32)
            lone = _latency_ms(clf, x)
            done, in_flight = 0, [clf.submit(x) for _ in range(2 * n)]
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < STREAMS_SECONDS:
                in_flight.pop(0).result()
                done += 1
                in_flight.append(clf.submit(x))
            rate = done / (time.perf_counter() - t0)
            for f in in_flight:
                f.result()
        finally:
            clf.close()
        rows[f"{n}x{plan.threads // n}"] = {"streams": n, "img_s": round(rate, 1), "b1_ms": round(lone, 3)}
    one = next(iter(rows.values()))
    best = max(rows.values(), key=lambda r: r["img_s"])
    chosen = best if best["img_s"] >= STREAMS_GAIN * one["img_s"] else one
    return {"threads": plan.threads, "chosen": chosen["streams"], "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M")}


def streams_reason(record: dict) -> str:
    rows = ", ".join(
        f"{name} {r['img_s']:g} img/s (lone call {r['b1_ms']:.1f} ms)" for name, r in record["rows"].items()
    )
    rule = (
        "the most batch-1 throughput with every stream busy"
        if record["chosen"] > 1
        else f"more streams gain less than {STREAMS_GAIN - 1:.0%} here, and one answers a lone call fastest"
    )
    return f"auto, measured {record.get('when', '')}: {rule}; streams x threads: {rows}"


def _read(path: Path, key: dict) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        record.get("key") != json.loads(json.dumps(key))
        or record.get("backend") not in engines.names()
        or not record.get("when")
    ):  # a failed measurement (older versions stored them) is no decision
        return None
    return record


def _key(cpu, static_plan, model, weights, precision, budget, model_id=None) -> dict:
    key = decision_key(cpu, model, weights, precision, static_plan, model_id)
    if budget is not None:
        key.update(budget_pts=budget.max_drop_pts, budget_images=budget.fingerprint)
    return key


def undecided(cpu, static_plan, model, weights, precision, budget=None, model_id=None) -> Path | None:
    """The decision file :func:`choose` would measure and write, or None when this machine has one."""
    key = _key(cpu, static_plan, model, weights, precision, budget, model_id)
    path = _path(key)
    return None if _read(path, key) is not None else path


def choose(cpu, static_plan, model, weights, precision, threads, load_plan, budget=None, streams=AUTO, model_id=None):
    """The plan with the measured backend (measuring first if this machine has no decision yet).
    With an accuracy ``budget`` (:mod:`.budget`) INT8 competes too, within it. With ``streams`` auto,
    the stream count is measured on the chosen engine too (:func:`measure_streams`). ``model_id``: the
    version a user's model declares (it keys the decision in place of its weights' hash)."""
    key = _key(cpu, static_plan, model, weights, precision, budget, model_id)
    path = _path(key)
    record = _read(path, key)
    cached = record is not None
    if record is None:
        record = {"key": key, **measure(cpu, static_plan, precision, threads, load_plan, budget)}
        if record.get("when"):  # a failure is not a decision: the next load measures again
            write_json_atomic(path, record, indent=1)
    plan = make_plan(
        cpu,
        record["backend"],
        record.get("precision", precision) if budget else precision,
        threads,
        availability=engines.availability(),
        streams=streams,
    )
    if requested_streams(streams, os.environ)[0] is None and plan.threads > 1:
        if (record.get("streams") or {}).get("threads") != plan.threads:  # a record from before streams
            record["streams"] = measure_streams(plan, load_plan)
            if record.get("when"):  # only a decision is stored
                write_json_atomic(path, record, indent=1)
        plan = dataclasses.replace(
            plan,
            streams=record["streams"]["chosen"],
            reasons={**plan.reasons, "streams": streams_reason(record["streams"])},
        )
    timings = ", ".join(
        f"{n.split('/')[0]}/{r['precision']} {r['b1_ms']:.2f} ms"
        + (f" ({-r['drop_pts']:+.1f} pts)" if "drop_pts" in r else "")
        for n, r in record["engines"].items()
        if "b1_ms" in r
    )
    reason = (
        f"auto, measured{' ' + record['when'] if record.get('when') else ''}"
        f"{' (cached decision)' if cached else ''}: {record['why']}; {timings}"
    )
    reasons = {**plan.reasons, "backend": reason}
    if budget is not None:  # the precision was measured too, not asked for
        reasons["precision"] = _budget_precision_reason(plan, budget)
    return dataclasses.replace(
        plan, reasons=reasons, measured={"engines": record["engines"], "file": str(path), "cached": cached}
    )


def _budget_precision_reason(plan: Plan, budget) -> str:
    """Why ``plan.precision``, when auto measured it within an accuracy budget (make_plan was handed the
    measured precision, and would call it "requested"); the hardware note make_plan found is kept."""
    hardware = plan.reasons.get("precision", "").partition("; ")[2]
    why = (
        f"auto, measured within the accuracy budget ({budget.max_drop_pts:g} top-1 point(s) against eager fp32): "
        f"{plan.backend}/{plan.precision} was the fastest path within it"
    )
    return why + (f"; {hardware}" if hardware else "")
