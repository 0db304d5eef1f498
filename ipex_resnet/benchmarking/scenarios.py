"""The MLPerf-style scenarios of a bench report, driven by MLCommons' LoadGen (:mod:`.loadgen`):
SingleStream (p90 latency), Offline (throughput) and Server (the highest Poisson rate whose p99 stays
under the bound, searched until a passing and a failing rate lie within 10%) for one path in this
process, on preprocessed images and again decoding the same JPEGs on two threads (the ceiling for any
HTTP front end on this path); then Server against the HTTP service (``ipex-resnet
serve`` in its own process, real JPEGs posted to ``/v1/classify``: decoding, micro-batching and HTTP
count — the served capacity) and against a peer serving stack, LitServe, serving the same engine
(:mod:`.peer_service`). Every number is labelled "MLPerf-style, not an official MLPerf result"."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.benchmarking import loadgen as L
from ipex_resnet.benchmarking import service_metrics
from ipex_resnet.errors import ConfigError, first_line

SCENARIO_NAMES = ("single-stream", "offline", "server", "service", "peer", "ray-serve", "ray-service")


def parse_scenarios(value: str | Sequence[str] | None) -> list[str]:
    """``--scenarios`` -> the list to run ("all" is every one; None or "none" is none)."""
    if value is None:
        return []
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if v.strip()]
    if items in (["none"], []):
        return []
    if "all" in items:
        return list(SCENARIO_NAMES)
    for item in items:
        if item not in SCENARIO_NAMES:
            raise ConfigError(f"unknown scenario {item!r}: choose from {', '.join(SCENARIO_NAMES)}, all, none")
    return [n for n in SCENARIO_NAMES if n in items]


def pick_path(results: dict, built: dict, wanted: str | None, bmax: int) -> str:
    """The path the scenarios run: ``wanted``, else ours (not a peer) with the best img/s at ``bmax``."""
    ours = [n for n, b in built.items() if b.classifier is not None]
    if wanted:
        if wanted not in ours:
            raise ConfigError(f"--scenario-path {wanted!r} is not one of the measured paths: {', '.join(ours)}")
        return wanted
    return max(ours, key=lambda n: results[n]["throughput"].get(str(bmax), 0.0))


def run_scenarios(s, built: dict, results: dict, jpegs: list[bytes], logs: Path, progress) -> dict:
    """Every scenario ``s.scenarios`` asks for, on one path; LoadGen's logs under ``logs``."""
    bmax = max(s.batch_sizes)
    name = pick_path(results, built, s.scenario_path, bmax)
    b = built[name]
    run_batch = _batch_runner(b, [b.classifier.preprocess(j) for j in jpegs])
    n = len(jpegs)
    search: dict[str, Any] = {"resolution": 0.25, "max_runs": 4} if s.quick else {"resolution": 0.10, "max_runs": 10}
    out: dict = {
        "label": L.LABEL,
        "path": name,
        "p99_ms_bound": s.p99_ms,
        "duration_s": s.scenario_budget,
        "samples": n,
        "max_batch": bmax,
        "logs": str(logs),
    }
    upper = _single_stream_offline(s, name, results[name], run_batch, n, logs, progress, out)
    # outside --quick every Server run holds at least 1,000 samples: its p99 rests on ten of them or more
    rs = L.RunSettings(s.scenario_budget, n, p99_ms=s.p99_ms, min_queries=1 if s.quick else 1000)
    if "server" in s.scenarios:
        _in_process_server(s, b, name, run_batch, jpegs, rs, logs, upper, search, progress, out)
    _served_scenarios(s, b, name, jpegs, rs, logs, upper, search, progress, out)
    _ratios(out)
    return out


def _batch_runner(b, arrays: list):
    """The path's runner on a batch of the preprocessed ``arrays`` (by index), as the queued SUTs call it."""
    import numpy as np

    def run_batch(idx: list[int]):
        return b.runner(np.stack([arrays[i] for i in idx]))

    return run_batch


def _single_stream_offline(s, name: str, measured: dict, run_batch, n: int, logs: Path, progress, out: dict) -> float:
    """SingleStream and Offline (also when a Server scenario needs its rate) into ``out``; returns the
    upper end of the Server searches (img/s): Offline's rate, else the report's, plus 5%."""
    bmax = max(s.batch_sizes)
    b1 = measured["latency"].get("1", {}).get("p50_ms") or 10.0
    rate = measured["throughput"].get(str(bmax)) or 1e3 / b1
    if "single-stream" in s.scenarios:
        progress.step(f"LoadGen SingleStream: {name}")
        out["single_stream"] = _queued(
            run_batch, 1, "single-stream", L.RunSettings(s.scenario_budget, n, expected_qps=1e3 / b1), logs
        )
    if "offline" in s.scenarios or any(
        x in s.scenarios for x in ("server", "service", "peer", "ray-serve", "ray-service")
    ):
        progress.step(f"LoadGen Offline: {name}")
        # LoadGen sizes Offline's one query from the expected rate; a SUT faster than that ends before the
        # minimum duration (an invalid run), so it is told half again the report's rate
        out["offline"] = _queued(
            run_batch, bmax, "offline", L.RunSettings(s.scenario_budget, n, expected_qps=rate * 1.5), logs
        )
        out["offline"]["vs_report_throughput"] = out["offline"]["samples_per_s"] / rate
    return max(out.get("offline", {}).get("samples_per_s") or rate, 1.0) * 1.05


def _in_process_server(
    s, b, name: str, run_batch, jpegs: list[bytes], rs: L.RunSettings, logs: Path, upper: float, search, progress, out
) -> None:
    """Server in this process into ``out``: on the preprocessed images, then decoding the JPEGs."""
    import numpy as np

    bmax = max(s.batch_sizes)
    progress.step(f"LoadGen Server (p99 <= {s.p99_ms:g} ms): {name}")
    sut = L.QueuedSUT(run_batch, bmax)
    try:
        out["server"] = L.server_search(sut, rs, logs / "server", upper, **search)
    finally:
        sut.close()
    progress.step(f"LoadGen Server decoding the JPEGs (p99 <= {s.p99_ms:g} ms): {name}")
    sut = L.QueuedSUT(lambda xs: b.runner(np.stack(xs)), bmax, prepare=lambda i: b.classifier.preprocess(jpegs[i]))
    try:
        out["server_decode"] = L.server_search(sut, rs, logs / "server-decode", upper, **search)
    finally:
        sut.close()


def _served_scenarios(
    s, b, name: str, jpegs: list[bytes], rs: L.RunSettings, logs: Path, upper: float, search, progress, out
) -> None:
    """Server against each serving stack asked for (its own process over HTTP) into ``out``; one that fails
    is recorded as its error."""
    bmax = max(s.batch_sizes)
    served = {
        "service": ("the HTTP service", _service_command, "/v1/classify", raw_request),
        "peer": ("LitServe with the same engine", _peer_command, "/predict", _multipart_request),
        "ray-serve": ("Ray Serve with the same engine", _ray_command, "/classify", raw_request),
        "ray-service": (
            f"our service on Ray Serve ({s.ray_replicas} replica(s))",
            _ray_service_command,
            "/v1/classify",
            raw_request,
        ),
    }
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_scenarios_") as scratch:  # INT8 calibration images
        for name_, (what, command, route, request) in served.items():
            key = name_.replace("-", "_")
            if name_ in s.scenarios:
                progress.step(f"LoadGen Server against {what}: {name}")
                out[key] = _guarded(
                    lambda command=command, key=key, route=route, request=request: served_capacity(
                        command(s, b, bmax, jpegs, logs / key, Path(scratch) / key),
                        route,
                        request(jpegs),
                        rs,
                        logs / key,
                        upper,
                        search,
                        bmax,
                        observe=key == "service",
                    )
                )


def _guarded(measure) -> dict:
    """One served scenario; a server that fails to start or answer is recorded, the rest goes on."""
    try:
        return measure()
    except ConfigError:
        raise
    except Exception as exc:
        return {"error": first_line(exc)}


def _ratios(out: dict) -> None:
    offline = (out.get("offline") or {}).get("samples_per_s")
    service = (out.get("service") or {}).get("capacity_qps")
    peer = (out.get("peer") or {}).get("capacity_qps")
    if offline and service is not None:
        out["served_vs_offline"] = service / offline
    if service is not None and peer:
        out["served_vs_peer"] = service / peer
    ray_serve = (out.get("ray_serve") or {}).get("capacity_qps")
    if service is not None and ray_serve:
        out["served_vs_ray_serve"] = service / ray_serve
    on_ray = (out.get("ray_service") or {}).get("capacity_qps")
    if service and on_ray is not None:
        out["ray_service_vs_service"] = on_ray / service
    if ray_serve and on_ray is not None:
        out["ray_service_vs_ray_serve"] = on_ray / ray_serve
    decode = (out.get("server_decode") or {}).get("capacity_qps")
    if service is not None and decode:
        out["served_vs_server_decode"] = service / decode


def _queued(run_batch, max_batch: int, scenario: str, rs: L.RunSettings, logs: Path) -> dict:
    sut = L.QueuedSUT(run_batch, max_batch)
    try:
        return L.run(sut, scenario, rs, logs / scenario)
    finally:
        sut.close()


def served_capacity(
    cmd: list[str],
    route: str,
    request,
    rs: L.RunSettings,
    logs: Path,
    upper: float,
    search: dict,
    max_batch: int,
    *,
    observe: bool = False,
) -> dict:
    """Start the server ``cmd`` on a free loopback port, wait until it answers, run the Server search
    against ``route``, stop it. Its log is kept beside LoadGen's. With ``observe``, each step records the
    server's own /metrics histograms (queue wait, model time per batch, batch size)."""

    logs.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    with open(logs / "server.log", "w") as log:
        proc = subprocess.Popen(
            cmd + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, route, request, logs / "server.log")
            sut = L.HttpSUT(url + route, request)
            try:
                # the search's upper end: what the endpoint answers with a few batches' worth in flight
                probed = sut.probe(min(rs.duration_s, 5.0), rs.samples, concurrency=2 * max_batch)
                result = L.server_search(
                    sut,
                    rs,
                    logs,
                    min(upper, probed * 1.1),
                    **search,
                    observe=service_metrics.observer(url) if observe else None,
                )
                result["probed_qps"] = probed
            finally:
                sut.close()
        finally:
            _stop(proc)
    result["command"] = " ".join(cmd[1:] if cmd[0] == sys.executable else cmd)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, route: str, request, log: Path, timeout_s: float = 900) -> None:
    """Until one real request to ``route`` answers 200 (both stacks load the model before that)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    content, headers = request(0)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the server exited ({proc.returncode}) before it was ready: {' | '.join(tail)}")
        try:
            if httpx.post(url + route, content=content, headers=headers, timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the server at {url} was not ready within {timeout_s:.0f} s (log: {log})")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def _spec_args(s, b, jpegs: list[bytes], logs: Path, scratch: Path) -> list[str]:
    """The model spec and path as ``ipex-resnet`` options: the preset as a JSON file (in ``logs``, beside
    LoadGen's), and for INT8 the bench's own calibration images as a folder in ``scratch`` (the same
    images, so the same cached artifact; copies of the user's photos never land beside the report)."""
    logs.mkdir(parents=True, exist_ok=True)
    args = [*s.model.cli_args(logs), "--backend", b.spec.backend, "--precision", b.spec.precision]
    if b.plan and b.plan.get("threads"):
        args += ["--threads", str(b.plan["threads"])]
    if b.spec.precision == "int8":
        calib = scratch / "calibration"
        calib.mkdir(parents=True, exist_ok=True)
        for i, j in enumerate(jpegs):
            (calib / f"{i:04d}.jpg").write_bytes(j)
        args += ["--calibration", str(calib), "--accept-accuracy"]
    return args


def _service_command(s, b, max_batch: int, jpegs: list[bytes], logs: Path, scratch: Path) -> list[str]:
    # with its defaults: --tune measures workers x streams against the service itself (cached per machine)
    return [
        sys.executable,
        "-m",
        "ipex_resnet.cli",
        "serve",
        *_spec_args(s, b, jpegs, logs, scratch),
        "--host",
        "127.0.0.1",
        "--max-batch",
        str(max_batch),
        "--p99-ms",
        f"{s.p99_ms:g}",
        "--log-level",
        "info",
    ]


def _peer_command(s, b, max_batch: int, jpegs: list[bytes], logs: Path, scratch: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ipex_resnet.benchmarking.peer_service",
        *_spec_args(s, b, jpegs, logs, scratch),
        "--max-batch",
        str(max_batch),
    ]


def raw_request(jpegs: list[bytes]):
    def request(i: int) -> tuple[bytes, dict]:
        return jpegs[i], {"content-type": "image/jpeg"}

    return request


def _ray_command(s, b, max_batch: int, jpegs: list[bytes], logs: Path, scratch: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ipex_resnet.benchmarking.peer_ray_serve",
        *_spec_args(s, b, jpegs, logs, scratch),
        "--max-batch",
        str(max_batch),
    ]


def _ray_service_command(s, b, max_batch: int, jpegs: list[bytes], logs: Path, scratch: Path) -> list[str]:
    """``ipex-resnet serve --ray`` (a local Ray instance) with ``--ray-replicas`` replicas, the path's threads
    split among them (``--replica-cpus``: each replica's engine threads)."""
    threads = max(1, int((b.plan or {}).get("threads") or 1) // s.ray_replicas)
    return [
        sys.executable,
        "-m",
        "ipex_resnet.cli",
        "serve",
        "--ray",
        *_spec_args(s, b, jpegs, logs, scratch),
        "--replicas",
        str(s.ray_replicas),
        "--replica-cpus",
        str(threads),
        "--host",
        "127.0.0.1",
        "--max-batch",
        str(max_batch),
        "--p99-ms",
        f"{s.p99_ms:g}",
        "--log-level",
        "info",
    ]


def _multipart_request(jpegs: list[bytes]):
    """Multipart bodies (LitServe's documented way to upload a file), encoded once by httpx."""
    import httpx

    bodies = []
    for i, j in enumerate(jpegs):
        req = httpx.Request("POST", "http://x/", files={"image": (f"{i}.jpg", j, "image/jpeg")})
        bodies.append((req.read(), {"content-type": req.headers["content-type"]}))
    return lambda i: bodies[i]


__all__ = ["SCENARIO_NAMES", "parse_scenarios", "pick_path", "run_scenarios"]
