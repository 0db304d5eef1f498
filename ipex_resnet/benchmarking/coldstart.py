"""Cold start: process start -> first top-5 printed by ``ipex-resnet classify --weights none --backend X
IMAGE``, with a warm artifact cache (one run warms it, a second process is timed), and that
process's peak RSS (its own high-water mark, :class:`.memory.ChildPeakRSS`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ipex_resnet.benchmarking.memory import ChildPeakRSS
from ipex_resnet.models.spec import ModelSpec

# Cold-start targets: lean engines (no torch at run time) vs torch engines; the lean process's peak RSS
# against a 210 MB process that decodes a JPEG with PIL/numpy and runs resnet18 in ONNX Runtime.
LEAN_TARGET_S = 1.5
TORCH_TARGET_S = 3.0
LEAN_RSS_REFERENCE_MB = 210.0
LEAN_RSS_FACTOR = 1.3
SCORE_LINE = re.compile(r"^\s+\d+(\.\d+)?%\s")
TIMEOUT_S = 900


def classify_command(
    engine: str,
    image: str | os.PathLike,
    model: ModelSpec,
    threads: int | None = None,
    *,
    directory: str | os.PathLike | None = None,
) -> list[str]:
    """``ipex-resnet classify`` of ``image`` on ``engine``; ``directory``: where the spec's preset and
    categories files go (needed when it has either)."""
    spec_args = model.cli_args(directory) if directory else ["--model", model.model, "--weights", model.weights]
    cmd = [sys.executable, "-m", "ipex_resnet", "classify", "--backend", engine, *spec_args, str(image)]
    return cmd + (["--threads", str(threads)] if threads else [])


def time_classify(cmd: list[str], env: dict | None = None, timeout: float = TIMEOUT_S) -> dict:
    """Run ``cmd``; seconds from process start to its 5th score line on stdout, and its peak RSS."""
    t0 = time.perf_counter()
    errfile = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed after the read; a file, not a pipe: a chatty child cannot block on it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True, env=env)
    mem = ChildPeakRSS(proc.pid)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    first_top5: float | None = None
    scores = 0
    assert proc.stdout is not None  # stdout=PIPE
    try:
        for line in proc.stdout:  # classify prints the image's path, then one line per label
            if SCORE_LINE.match(line):
                scores += 1
                if scores == 5 and first_top5 is None:
                    first_top5 = time.perf_counter() - t0
                    mem.sample()  # the peak up to the first top-5, while the process is surely alive
        code = proc.wait()
    finally:
        killer.cancel()
    exit_s = time.perf_counter() - t0
    peak = mem.stop()
    errfile.seek(0)
    err = errfile.read()
    errfile.close()
    out: dict[str, Any] = {"exit_code": code, "to_first_top5_s": first_top5, "to_exit_s": exit_s, "peak_rss_mb": peak}
    if code != 0 or first_top5 is None:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        out["error"] = f"exit {code}: {tail[:300]}"
    return out


def target_for(engine: str) -> tuple[float, float | None]:
    """(seconds, peak-RSS MB or None) targets for ``engine``'s cold start."""
    from ipex_resnet import engines

    if engines.get(engine).needs_torch:
        return TORCH_TARGET_S, None
    return LEAN_TARGET_S, LEAN_RSS_REFERENCE_MB * LEAN_RSS_FACTOR


def cold_start(
    engine: str, image: str | os.PathLike, *, model: ModelSpec, threads: int | None = None, env: dict | None = None
) -> dict:
    """Warm the artifact cache with one ``classify`` process, then time a second one."""
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_cold_") as tmp:
        return _cold_start(engine, classify_command(engine, image, model, threads, directory=tmp), env)


def _cold_start(engine: str, cmd: list[str], env: dict | None) -> dict:
    env = dict(os.environ if env is None else env)
    env["PYTHONUNBUFFERED"] = "1"  # each printed line reaches us when it is printed, not at exit
    warm = time_classify(cmd, env)
    if "error" in warm:
        return {"engine": engine, "error": f"warm-up run failed: {warm['error']}"}
    timed = time_classify(cmd, env)
    secs, rss = target_for(engine)
    out = {"engine": engine, "warmup_s": warm["to_exit_s"], **timed, "target_s": secs}
    if "error" not in timed:
        out["met_time"] = timed["to_first_top5_s"] <= secs
        if rss is not None:
            out["target_rss_mb"] = rss
            out["met_rss"] = timed["peak_rss_mb"] <= rss
    return out


def write_image(directory: str | os.PathLike, data: bytes | None = None) -> Path:
    """``one.jpg`` in ``directory`` (a synthetic photo unless ``data`` is given), for classify."""
    from ipex_resnet.benchmarking.inputs import synthetic_jpeg

    p = Path(directory) / "one.jpg"
    p.write_bytes(data or synthetic_jpeg())
    return p


__all__ = [
    "LEAN_TARGET_S",
    "TORCH_TARGET_S",
    "classify_command",
    "cold_start",
    "write_image",
    "target_for",
    "time_classify",
]
