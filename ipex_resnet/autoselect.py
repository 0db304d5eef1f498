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
import tempfile
import time
from pathlib import Path

from . import engines
from .cache import digest, root
from .engines.base import dist_version
from .errors import IpexResnetError
from .policy import AUTO, ENV_BACKEND, make_plan

ENV_AUTO = "IPEX_RESNET_AUTO"
TIMED_CALLS = 15
# Agreement with eager FP32 on a fixed input, centered relative L2 (as the tests measure it, looser:
# these are random or unknown weights). A wrong engine is far above either (>= 0.5).
TOLERANCE = {"fp32": 1e-3, "bf16": 0.1, "int8": 0.5}  # int8 also has its own held-out gate


def wanted(backend, measure: bool | None) -> bool:
    if measure is not None:
        return bool(measure)
    if backend is not None and str(backend).lower() != AUTO:
        return False
    if os.environ.get(ENV_BACKEND, "").strip().lower() not in ("", AUTO):
        return False
    return os.environ.get(ENV_AUTO, "measure").strip().lower() != "static"


def decision_key(cpu, model, weights, precision, threads_plan) -> dict:
    from .loader import weights_id

    libs = {d: dist_version(d) for d in ("torch", "intel-extension-for-pytorch", "openvino", "onnxruntime")}
    return {"cpu": cpu.model_name, "isa": cpu.isa_level, "threads": threads_plan.threads, "versions": libs,
            "available": sorted(n for n, (ok, _) in engines.availability().items() if ok),
            "model": model if isinstance(model, str) else type(model).__name__,
            "weights": weights_id(model, weights), "precision": str(precision or AUTO).lower()}


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


def measure(cpu, static_plan, precision, threads, load_plan) -> dict:
    """Build, check and time every engine that can run; returns the decision record."""
    import numpy as np
    from tqdm import tqdm

    candidates = [n for n, (ok, _) in engines.availability().items() if ok]
    ref_plan = make_plan(cpu, "eager", "fp32", threads, availability=engines.availability())
    rows: dict[str, dict] = {}
    bar = tqdm(candidates, desc="measuring engines", unit="engine", file=sys.stderr, disable=None, leave=False)
    ref = x = None
    for name in bar:
        try:
            plan = make_plan(cpu, name, precision, threads, availability=engines.availability())
        except IpexResnetError as exc:
            rows[name] = {"skipped": str(exc)}
            continue
        bar.set_postfix_str(f"{name}/{plan.precision}")
        try:
            clf = load_plan(plan)
            if x is None:
                crop = clf.preprocessor.crop_size
                rng = np.random.default_rng(0)
                x = rng.standard_normal((4, 3, crop, crop), dtype=np.float32)
                ref = load_plan(ref_plan)(x)
            err = _centered_rel_l2(clf(x), ref)
            ms = _latency_ms(clf, x[:1])
        except Exception as exc:  # noqa: BLE001 - one engine failing must not stop the choice
            rows[name] = {"precision": plan.precision, "failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        ok = err <= TOLERANCE.get(plan.precision, 0.1)
        rows[name] = {"precision": plan.precision, "b1_ms": round(ms, 3), "rel_err": float(f"{err:.3g}"),
                      "agrees": ok}
    bar.close()
    good = {n: r for n, r in rows.items() if r.get("agrees")}
    if not good:
        return {"backend": static_plan.backend, "engines": rows, "why": "no engine could be measured"}
    best = min(good, key=lambda n: good[n]["b1_ms"])
    return {"backend": best, "engines": rows, "when": time.strftime("%Y-%m-%d %H:%M"),
            "why": f"fastest batch-1 latency that agrees with eager fp32 ({good[best]['b1_ms']:.2f} ms)"}


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def _read(path: Path, key: dict) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != json.loads(json.dumps(key)) or record.get("backend") not in engines.names():
        return None
    return record


def choose(cpu, static_plan, model, weights, precision, threads, load_plan):
    """The plan with the measured backend (measuring first if this machine has no decision yet)."""
    key = decision_key(cpu, model, weights, precision, static_plan)
    path = _path(key)
    record = _read(path, key)
    cached = record is not None
    if record is None:
        record = {"key": key, **measure(cpu, static_plan, precision, threads, load_plan)}
        _write(path, record)
    plan = make_plan(cpu, record["backend"], precision, threads, availability=engines.availability())
    timings = ", ".join(f"{n}/{r['precision']} {r['b1_ms']:.2f} ms" for n, r in record["engines"].items()
                        if "b1_ms" in r)
    reason = (f"auto, measured{' ' + record['when'] if record.get('when') else ''}"
              f"{' (cached decision)' if cached else ''}: {record['why']}; {timings}")
    reasons = {**plan.reasons, "backend": reason}
    return dataclasses.replace(plan, reasons=reasons, measured={"engines": record["engines"], "file": str(path),
                                                                  "cached": cached})
