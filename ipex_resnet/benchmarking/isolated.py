"""Each path alone in a fresh process: load it, time batch-1 latency and large-batch throughput, with
nothing else's thread pool in the process. Interleaved timing (:mod:`.run`) keeps ratios honest on a
noisy machine; this keeps one engine from paying for another's spinning threads. Both are reported.

    python -m ipex_resnet.benchmarking.isolated '{"backend": "openvino", "precision": "bf16", ...}'

prints one JSON line (the child side); :func:`measure_alone` is the parent side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ipex_resnet.benchmarking.matrix import PathSpec
from ipex_resnet.models.spec import ModelSpec

TIMEOUT_S = 900  # a cold artifact cache means a compile (AOTInductor: a minute or more on 2 cores)


def measure_alone(
    spec: PathSpec,
    *,
    model: ModelSpec,
    threads: int,
    budget_s: float,
    batch_sizes: list[int],
    crop: int,
    onnx_path: Path | None = None,
    images: str | None = None,
    timeout: float = TIMEOUT_S,
) -> dict:
    """Run ``spec`` of ``model`` in a fresh interpreter; returns its latency/throughput, load time and peak
    RSS, or ``{"error": ...}`` (one path failing must not sink the report)."""
    req = {
        "backend": spec.backend,
        "precision": spec.precision,
        "peer": spec.peer,
        "model": model.to_dict(),
        "threads": threads,
        "budget": budget_s,
        "batch_sizes": sorted({1, max(batch_sizes)}),
        "crop": crop,
        "onnx": str(onnx_path) if onnx_path else None,
        "images": images,
    }
    return json_child(__name__, req, timeout)


def json_child(module: str, req: dict, timeout: float, env: dict | None = None) -> dict:
    """``python -m module '<req as JSON>'`` in a fresh interpreter; its last JSON line on stdout, or
    ``{"error": ...}`` with the exit code and the last line of its stderr (or the timeout)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, json.dumps(req)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or dict(os.environ),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def _child(req: dict) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    t_start = time.perf_counter()
    from ipex_resnet.benchmarking.inputs import batch, jpegs
    from ipex_resnet.benchmarking.memory import process_peak_mb
    from ipex_resnet.benchmarking.paths import Workspace, build_path
    from ipex_resnet.benchmarking.timing import summarize, time_for

    images = jpegs(req["images"], 32) if req.get("images") else None
    # a peer child gets the parent's ONNX export and the crop size: an FP32 peer never imports torch
    ws = Workspace(
        ModelSpec.from_dict(req["model"]),
        images,
        directory=str(Path(req["onnx"]).parent) if req.get("onnx") else None,
        crop=req["crop"],
        onnx_path=req.get("onnx"),
    )
    spec = PathSpec(req["backend"], req["precision"], bool(req["peer"]))
    built = build_path(spec, ws, req["threads"])
    out: dict = {
        "load_s": built.load_s,
        "process_to_loaded_s": time.perf_counter() - t_start,
        "latency": {},
        "throughput": {},
    }
    sizes = req["batch_sizes"]
    for bs in sizes:
        x = batch(bs, ws.crop, seed=bs)
        for _ in range(2):
            built.runner(x)  # warm-up (a new batch size may allocate or specialise)
        samples = time_for(built.runner, x, req["budget"] / len(sizes), min_calls=5 if bs == 1 else 3)
        stats = summarize(samples)
        out["latency"][str(bs)] = stats
        out["throughput"][str(bs)] = bs / (stats["p50_ms"] / 1e3)
    out["peak_rss_mb"] = process_peak_mb()
    out["imported_torch"] = "torch" in sys.modules
    return out


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
