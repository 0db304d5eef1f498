"""Graceful shutdown of `ipex-resnet serve` in a subprocess: SIGTERM turns readiness 503 first, then stops
accepting, finishes the requests it already admitted, and exits 0."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
from conftest import sample_photos
from serve_helpers import free_port

PHOTOS = sample_photos()[:16]
pytestmark = pytest.mark.any_stack


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120, probe: str = "/readyz") -> None:
    """Until ``probe`` answers 200 (``/healthz``: the server is up, the model may still be loading)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early with {proc.returncode}: {proc.stderr.read()[-2000:]}"
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server never answered {probe} with 200")


def test_sigterm_finishes_accepted_requests_then_exits():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # batching off: the 16 requests below are served one by one, so most are still in flight at SIGTERM
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipex_resnet",
            "serve",
            "--port",
            str(port),
            "--weights",
            "none",
            "--backend",
            "eager",
            "--precision",
            "fp32",
            "--max-batch",
            "1",
            "--log-level",
            "warning",
            "--workers",
            "1",
            "--no-tune",
            "--drain-delay",
            "1.5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_ready(url, proc)
        first_done = concurrent.futures.Future()
        finished_at: dict[int, float] = {}

        def one(i: int):
            r = httpx.post(
                url + "/v1/classify",
                content=PHOTOS[i].read_bytes(),
                headers={"content-type": "image/jpeg"},
                timeout=120,
            )
            finished_at[i] = time.monotonic()
            if not first_done.done():
                first_done.set_result(i)
            return r

        with concurrent.futures.ThreadPoolExecutor(len(PHOTOS)) as pool:
            futures = [pool.submit(one, i) for i in range(len(PHOTOS))]
            first_done.result(timeout=120)
            # SIGTERM only once every request has been admitted (the rest are in flight inside the server);
            # a request that first arrives during the drain is answered 503 + Retry-After instead
            deadline = time.monotonic() + 60
            while True:
                text = httpx.get(url + "/metrics", timeout=10).text
                in_flight = next(
                    float(line.split()[-1])
                    for line in text.splitlines()
                    if line.startswith("ipex_resnet_requests_in_flight ")
                )
                if in_flight + len(finished_at) >= len(PHOTOS) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            sigterm_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            ready = httpx.get(url + "/readyz", timeout=10)  # still listening (drain delay), but not ready
            answers = [f.result(timeout=120) for f in futures]
        assert [r.status_code for r in answers] == [200] * len(PHOTOS), [
            r.text for r in answers if r.status_code != 200
        ]
        assert any(t > sigterm_at for t in finished_at.values()), "no request was in flight at SIGTERM"
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "shutting_down"
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_while_the_model_still_compiles_exits_at_once(tmp_path):
    """Stopped during a cold Inductor compile (tens of seconds here), the server exits without waiting
    for it: nothing was admitted, so nothing is lost, and no compile worker is left behind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipex_resnet",
            "serve",
            "--port",
            str(port),
            "--weights",
            "none",
            "--backend",
            "inductor",
            "--precision",
            "fp32",
            "--log-level",
            "warning",
            "--workers",
            "1",
            "--no-tune",
            "--drain-delay",
            "0.2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "IPEX_RESNET_CACHE_DIR": str(tmp_path / "cold-cache")},
    )
    try:
        wait_ready(url, proc, 60, probe="/healthz")  # up and loading: alive, not ready
        ready = httpx.get(url + "/readyz", timeout=2)
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"
        time.sleep(1.0)  # well into the compile
        children = psutil.Process(proc.pid).children(recursive=True)  # e.g. Inductor's compile workers
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
        took = time.monotonic() - t0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err[-2000:]
    assert took < 10, f"took {took:.1f} s to stop"  # the compile alone takes far longer here
    assert "stopped while the model was still loading" in err
    gone, alive = psutil.wait_procs(children, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, f"processes of the stopped server left behind: {[p.cmdline()[:4] for p in alive]}"
