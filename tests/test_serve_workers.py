"""``--workers``: CPU sets per worker (pure, on injected topologies) and a real two-worker server whose
processes are read back with psutil: pinned to disjoint cores, metrics aggregated across them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipex_resnet.errors import ConfigError
from ipex_resnet.serve.workers import LogicalCPU, assign_cpus, default_workers

ROOT = Path(__file__).resolve().parents[1]
from conftest import sample_photos
from serve_helpers import free_port

pytestmark = pytest.mark.any_stack


def topo(nodes: int, cores_per_node: int, smt: int = 1) -> list[LogicalCPU]:
    """Linux numbering: all first siblings first, then the second siblings."""
    out = []
    n_cores = nodes * cores_per_node
    for t in range(smt):
        for core in range(n_cores):
            node = core // cores_per_node
            out.append(LogicalCPU(t * n_cores + core, (node, core), node))
    return out


def test_assign_two_sockets_with_smt():
    t = topo(nodes=2, cores_per_node=4, smt=2)  # CPUs 0-7 first siblings, 8-15 second
    assert assign_cpus(t, 1) == [[0, 1, 2, 3]]  # one worker: the cores of one node, no siblings
    assert assign_cpus(t, 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # one per node
    assert assign_cpus(t, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]  # never across a node
    assert assign_cpus(t, 8) == [[c] for c in range(8)]
    with pytest.raises(ConfigError, match="physical core per worker"):
        assign_cpus(t, 9)


def test_assign_uneven_and_defaults():
    t = topo(nodes=1, cores_per_node=2)
    assert assign_cpus(t, 2) == [[0], [1]]
    assert default_workers(t)[0] == 1  # measured here: one 2-thread worker, see docs/serve.md
    assert default_workers(topo(nodes=2, cores_per_node=4))[0] == 2  # one per node
    assert assign_cpus(topo(nodes=1, cores_per_node=7), 3) == [[0, 1], [2, 3], [4, 5]]
    n, why = default_workers(topo(nodes=2, cores_per_node=16, smt=2), sockets=2)
    assert n == 8 and "NUMA" in why
    for sets in (assign_cpus(topo(2, 16, 2), n),):
        assert all(len(s) == 4 for s in sets) and len({c for s in sets for c in s}) == 32


def _needs_two_workers():
    """(psutil, httpx, serve_helpers.metric), or a skip naming what is missing."""
    psutil = pytest.importorskip("psutil")
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from serve_helpers import metric

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    return psutil, httpx, metric


def _start_two_workers(*, max_batch: int, stdout) -> tuple[str, subprocess.Popen]:
    """``ipex-resnet serve --workers 2`` (eager, random weights) on a free loopback port."""
    port = free_port()
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
            "--workers",
            "2",
            "--no-tune",
            "--max-batch",
            str(max_batch),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )
    return f"http://127.0.0.1:{port}", proc


def test_two_workers_are_pinned_and_share_metrics():
    psutil, httpx, metric = _needs_two_workers()
    photo = sample_photos()[0].read_bytes()
    url, proc = _start_two_workers(max_batch=2, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        ready = 0
        while ready < 6:  # several ready answers in a row: both workers up (either may answer)
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "never ready"
            try:
                ready = ready + 1 if httpx.get(url + "/readyz", timeout=5).status_code == 200 else 0
            except httpx.HTTPError:
                ready = 0
            time.sleep(0.2)
        workers = psutil.Process(proc.pid).children()
        workers = [
            w
            for w in workers
            if "multiprocessing" in " ".join(w.cmdline()) and "resource_tracker" not in " ".join(w.cmdline())
        ]
        assert len(workers) == 2, [w.cmdline() for w in workers]
        sets = [set(os.sched_getaffinity(w.pid)) for w in workers]
        assert all(len(s) == 1 for s in sets) and not sets[0] & sets[1], sets
        n = 6
        for _ in range(n):
            assert (
                httpx.post(
                    url + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=60
                ).status_code
                == 200
            )
        text = httpx.get(url + "/metrics", timeout=10).text
        assert metric(text, "ipex_resnet_images_total") == n  # summed over both workers' files
        assert metric(text, "ipex_resnet_workers") == 2
        rss = [s for s in text.splitlines() if s.startswith("ipex_resnet_worker_resident_memory_bytes{")]
        assert len(rss) == 2, rss  # one per worker (label pid)
        first_line = proc.stderr.readline()
        assert "2 worker(s)" in first_line and "1 thread(s) each" in first_line, first_line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not any(
            psutil.pid_exists(w.pid) and psutil.Process(w.pid).status() != psutil.STATUS_ZOMBIE for w in workers
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def worker_processes(psutil, parent_pid: int) -> list:
    out = []
    for w in psutil.Process(parent_pid).children():
        try:
            cmd = " ".join(w.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in cmd and "resource_tracker" not in cmd:
            out.append(w)
    return out


def test_restarted_worker_takes_no_requests_before_its_model_is_ready():
    """kill -9 one of two workers: the parent restarts it, and while its model loads the surviving worker
    takes every connection on the shared socket. No client sees 503 "not_ready" from the new worker."""
    psutil, httpx, metric = _needs_two_workers()
    photo = sample_photos()[0].read_bytes()
    url, proc = _start_two_workers(max_batch=4, stdout=subprocess.DEVNULL)

    def all_ready() -> bool:  # both workers alive and ready (the gauge is the least ready worker's)
        try:
            text = httpx.get(url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            return False
        return metric(text, "ipex_resnet_workers") == 2 and metric(text, "ipex_resnet_ready") == 1

    def classify() -> httpx.Response:
        for attempt in (1, 2):  # a connection the killed worker had accepted is reset: retry it once
            try:
                return httpx.post(
                    url + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=60
                )
            except httpx.TransportError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    try:
        deadline = time.monotonic() + 180
        while not all_ready():
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.2)
        before = worker_processes(psutil, proc.pid)
        assert len(before) == 2
        victim = before[0]
        os.kill(victim.pid, signal.SIGKILL)
        statuses, restarted = [], None
        deadline = time.monotonic() + 120
        while restarted is None or len(statuses) < restarted + 5:  # until the new worker is up, and a few more
            assert time.monotonic() < deadline, f"the worker was not restarted and ready in time: {statuses}"
            r = classify()
            statuses.append(r.status_code)
            assert r.status_code == 200, (len(statuses), r.status_code, r.text)
            pids = {w.pid for w in worker_processes(psutil, proc.pid)}
            if restarted is None and victim.pid not in pids and len(pids) == 2 and all_ready():
                restarted = len(statuses)
        assert restarted >= 5, f"only {restarted} request(s) while the new worker loaded: the test saw nothing"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
