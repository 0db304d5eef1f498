"""The service shaped by its latency target (``--p99-ms``) and fed by several inference streams: the batch
cap follows the measured latency-vs-batch curve, an impossible target is refused at startup in one line
(the installed console script, a real model), and N streams run N batches at once."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from serve_helpers import free_port
from user_repo import user_repo  # noqa: F401 - a fixture

from ipex_resnet.errors import ConfigError
from ipex_resnet.serve import tuning
from ipex_resnet.serve.batching import Batcher

pytestmark = pytest.mark.any_stack


def test_batch_cap_follows_the_curve_and_the_target():
    curve = {1: 10.0, 2: 18.0, 4: 34.0, 8: 66.0, 16: 130.0}
    # 2 x latency(b) + wait within 75% of the target
    assert tuning.batch_cap(100, 5, curve) == 4  # 2*34+5 = 73 <= 75; 2*66+5 > 75
    assert tuning.batch_cap(90, 5, curve) == 2  # 73 > 67.5; 2*18+5 = 41 <= 67.5
    assert tuning.batch_cap(1000, 5, curve) == 16
    assert tuning.batch_cap(20, 5, curve) == 1  # nothing fits: one image at a time
    tuning.check_target(10.0, curve, "m")  # one batch-1 call fits exactly
    with pytest.raises(
        ConfigError,
        match=r"--p99-ms 9 cannot be met here: one batch-1 call of m takes 10.0 ms "
        r"on this machine; ask for at least 10 ms",
    ):
        tuning.check_target(9, curve, "m")
    assert "max batch 2" in tuning.describe(100, 2, curve) and "b16 130.0 ms" in tuning.describe(100, 2, curve)


def test_latency_curve_measures_each_size_and_stops_past_the_limit():
    calls = []

    def predict(x):
        calls.append(x.shape)
        time.sleep(0.004 * x.shape[0])

    curve = tuning.latency_curve(predict, (3, 8, 8), [1, 2, 4, 8, 16], stop_above_ms=10)
    assert list(curve) == [1, 2, 4]  # b4 took ~16 ms > 10: b8 and b16 are not measured
    assert 3.5 <= curve[1] < curve[2] < curve[4] and all(s[1:] == (3, 8, 8) for s in calls)


def _cut(a: list[float], b: list[float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@pytest.mark.parametrize("streams", [1, 2])
def test_streams_run_batches_at_once_and_answer_each_image(streams):
    spans: list[list[float]] = []
    lock = threading.Lock()

    def infer(batch):
        t0 = time.monotonic()
        time.sleep(0.2)
        with lock:
            spans.append([t0, time.monotonic()])
        out = np.zeros((batch.shape[0], 10), dtype=np.float32)
        out[np.arange(batch.shape[0]), batch[:, 0, 0, 0].astype(int)] = 1.0
        return out

    def topk(logits, k):
        return [[{"index": int(i)} for i in np.argsort(-row)[:k]] for row in logits]

    async def main():
        b = Batcher(infer, topk, max_batch=1, max_wait_s=0.0, max_queue=16, streams=streams)
        b.start()
        futures = []
        for i in range(4):
            futures += b.submit([np.full((3, 2, 2), float(i), dtype=np.float32)], topk=1)
        got = await asyncio.gather(*futures)
        await b.stop(5)
        return got, b

    got, b = asyncio.run(main())
    assert [g[0]["index"] for g in got] == [0, 1, 2, 3] and b.batches == 4
    overlapping = any(_cut(x, y) for i, x in enumerate(spans) for y in spans[i + 1 :])
    assert overlapping == (streams > 1), spans


def test_stop_answers_what_never_reached_a_stream():
    gate = threading.Event()

    def infer(batch):
        gate.wait(10)
        return np.zeros((batch.shape[0], 2), dtype=np.float32)

    async def main():
        b = Batcher(infer, lambda logits, k: [[{"index": 0}]] * len(logits), max_batch=1, max_wait_s=0, max_queue=8)
        b.start()
        futures = [f for _ in range(3) for f in b.submit([np.zeros((3, 2, 2), dtype=np.float32)], topk=1)]
        await asyncio.sleep(0.1)
        await b.stop(0.2)  # the first is running behind the gate; the other two never started
        gate.set()
        return await asyncio.gather(*futures, return_exceptions=True)

    got = asyncio.run(main())
    stopped = [g for g in got if isinstance(g, Exception)]
    assert len(stopped) == 2 and all("stopped before this image was classified" in str(e) for e in stopped)


def _console_script() -> str:
    exe = shutil.which("ipex-resnet", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.fail("the ipex-resnet console script is not installed beside this Python")
    return exe


@pytest.mark.slow
def test_serve_refuses_a_target_below_one_model_call_in_one_line():
    pytest.importorskip("uvicorn")
    proc = subprocess.run(
        [
            _console_script(),
            "serve",
            "--weights",
            "none",
            "--backend",
            "onnxruntime",
            "--precision",
            "fp32",
            "--port",
            "0",
            "--p99-ms",
            "0.5",
            "--no-tune",
            "--log-level",
            "warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "--p99-ms 0.5 cannot be met here: one batch-1 call of resnet18 on onnxruntime/fp32 takes" in errors[0]
        and "ask for at least" in errors[0]
    ), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def _serve_until_ready(user_repo, *extra: str) -> str:
    """``ipex-resnet serve`` (the console script) on the user's model with its defaults (--tune on): wait
    until /readyz answers 200, stop it with SIGTERM; its stderr."""
    import httpx

    root, env = user_repo
    port = free_port()
    log = root / f"serve-{port}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                _console_script(),
                "serve",
                "--model",
                "mypkg.net:build",
                "--preset",
                "preset.json",
                "--backend",
                "onnxruntime",
                "--precision",
                "fp32",
                "--port",
                str(port),
                *extra,
            ],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the service was not ready within 600 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
    return log.read_text()


@pytest.mark.slow
def test_tune_measures_once_then_starts_from_the_cached_choice(user_repo):
    pytest.importorskip("mlperf_loadgen")
    first = _serve_until_ready(user_repo, "--p99-ms", "200")
    steps = [line for line in first.splitlines() if "ipex-resnet serve: tuning " in line]
    assert len(steps) >= 2, first[-3000:]  # at least two candidates (streams or workers) and the wait
    assert any("-> " in line and "QPS" in line for line in first.splitlines()), first[-3000:]
    ready = [line for line in first.splitlines() if "ready:" in line]
    assert ready and "tuned (measured" in ready[-1] and "QPS with p99 <= 200 ms" in ready[-1], first[-3000:]
    # the same machine, model and target: the cached choice, no measuring
    again = _serve_until_ready(user_repo, "--p99-ms", "200")
    assert "ipex-resnet serve: tuning " not in again
    ready2 = [line for line in again.splitlines() if "ready:" in line]
    assert ready2 and "tuned (cached" in ready2[-1], again[-3000:]
    root, _ = user_repo
    records = list((root / "cache" / "serve-tuning").glob("*.json"))
    assert len(records) == 1
    import json

    record = json.loads(records[0].read_text())
    assert record["key"]["p99_ms"] == 200 and record["key"]["model"]["model"] == "mypkg.net:build"
    assert record["best"]["capacity_qps"] == max(r.get("capacity_qps") or 0 for r in record["rows"])
