"""The service on Ray Serve, on a real local Ray cluster: a head and a second node started with ``ray
start`` on this machine (one CPU each), ``ipex-resnet serve --ray ADDRESS --replicas 2`` (the installed
console script) spreading its replicas over both; OIP v2 through tritonclient and ``/v1/classify`` answer
as the local service does; a replica killed under load is replaced and no request hangs or is lost
silently; a clean stop leaves no replica, and the local mode (``--ray`` alone) no Ray process."""

from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import sample_photos
from serve_helpers import free_port, require_service

require_service()
pytest.importorskip("ray.serve", reason="Ray is not installed on this stack (pip install 'ipex_resnet[ray]')")
httpx = pytest.importorskip("httpx")
psutil = pytest.importorskip("psutil")
httpclient = pytest.importorskip("tritonclient.http")

# Ray and the engines it serves behave the same on either torch stack: the latest stack runs it (CI)
pytestmark = [pytest.mark.slow, pytest.mark.any_stack]

PHOTOS = sample_photos()[:3]
# a user's model that is not ResNet-18 (random weights: the answers are compared, not judged)
MODEL = ["--model", "mobilenet_v3_small", "--weights", "none", "--backend", "onnxruntime", "--precision", "fp32"]
REPLICA = "ServeReplica:ipex_resnet:IpexResnet"
BIN = Path(sys.executable).parent


def ray_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout)


def ray_processes(session_dir: str | None = None) -> list[psutil.Process]:
    """This machine's Ray processes (of one cluster's temp dir, when given)."""
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            name = p.info["name"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if (
            "raylet" in name
            or "gcs_server" in name
            or cmd.startswith("ray::")
            or "ray/_private/workers" in cmd
            or "ray/dashboard" in cmd
            or "raylet" in cmd
        ) and (session_dir is None or session_dir in cmd):
            out.append(p)
    return out


def replicas() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if REPLICA in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture
def cluster():
    """A head (1 CPU) and a second node (1 CPU) on this machine; ``ray stop`` after, checked."""
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must stay under 108 bytes
    # token authentication, as Ray's docs advise for a cluster: every node and the driver share the token
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    port = free_port()
    head = ray_cli(
        "start",
        "--head",
        "--num-cpus",
        "1",
        "--port",
        str(port),
        "--include-dashboard",
        "false",
        "--temp-dir",
        temp,
        "--disable-usage-stats",
        env=env,
    )
    assert head.returncode == 0, head.stdout[-2000:] + head.stderr[-2000:]
    try:
        second = ray_cli("start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", env=env)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        yield {"address": f"127.0.0.1:{port}", "env": env, "temp": temp}
    finally:
        ray_cli("stop", "--force", env=env)
        deadline = time.monotonic() + 30
        while ray_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = ray_processes(temp)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left after ray stop: {[p.pid for p in left]}"


def start_serving(args: list[str], env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [str(BIN / "ipex-resnet"), "serve", *args, *MODEL, "--port", str(port), "--no-tune", "--max-batch", "4"],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 600
    try:
        while "ready: Ray Serve" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "not ready within 600 s: " + log.read_text()[-3000:]
            time.sleep(1)
    except BaseException:
        if proc.poll() is None:  # nothing left running behind a failed start
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc, port


def stop_serving(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.fixture(scope="module")
def local_answers():
    """What the local service answers for PHOTOS (the same model spec, in this process)."""
    import ipex_resnet
    from ipex_resnet.serve import ServeConfig, ServerThread, create_app

    def loader():
        return ipex_resnet.load(
            "mobilenet_v3_small", weights="none", backend="onnxruntime", precision="fp32", threads=1
        )

    with ServerThread(create_app(loader, ServeConfig(max_batch=4))) as srv:
        srv.wait_ready()
        files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in PHOTOS]
        v1 = httpx.post(srv.url + "/v1/classify?topk=3", files=files, timeout=60).json()
        oip = oip_infer(f"{srv.host}:{srv.port}")
    return v1, oip


def oip_infer(url: str) -> dict:
    client = httpclient.InferenceServerClient(url, connection_timeout=60, network_timeout=60)
    try:
        assert client.is_server_ready() and client.is_model_ready("mobilenet_v3_small")
        inp = httpclient.InferInput("image", [len(PHOTOS)], "BYTES")
        inp.set_data_from_numpy(np.array([p.read_bytes() for p in PHOTOS], dtype=np.object_), binary_data=True)
        res = client.infer("mobilenet_v3_small", [inp], parameters={"topk": 3})
        return {"indices": res.as_numpy("indices").tolist(), "scores": res.as_numpy("scores")}
    finally:
        client.close()


def kill_under_load(url: str, victim: psutil.Process, clients: int = 4, seconds: float = 25) -> list[tuple[int, str]]:
    """(status, body) of every request ``clients`` loops sent for ``seconds`` while ``victim`` was killed
    5 s in; none may hang."""
    photo = PHOTOS[0].read_bytes()
    stop_at = time.monotonic() + seconds

    def client_loop() -> list[tuple[int, str]]:
        seen = []
        with httpx.Client(timeout=90) as c:
            while time.monotonic() < stop_at:
                r = c.post(url + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"})
                seen.append((r.status_code, r.text[:300]))
        return seen

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        jobs = [pool.submit(client_loop) for _ in range(clients)]
        time.sleep(5)
        victim.kill()
        return [o for j in jobs for o in j.result(timeout=180)]  # none hangs


def wait_replaced(url: str, victim: psutil.Process) -> None:
    """Until Ray has replaced ``victim`` and the app answers again (4 of 4 requests)."""
    photo = PHOTOS[0].read_bytes()
    deadline = time.monotonic() + 240
    while not (len(replicas()) == 2 and victim.pid not in {p.pid for p in replicas()}):
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(1)
    deadline = time.monotonic() + 240
    while (
        httpx.get(url + "/readyz", timeout=30).status_code != 200
        or len(
            [
                r
                for r in (
                    httpx.post(url + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
                    for _ in range(4)
                )
                if r.status_code == 200
            ]
        )
        < 4
    ):
        assert time.monotonic() < deadline, "not serving again after the replacement"
        time.sleep(1)


def test_two_replicas_on_two_nodes_answer_as_the_local_service_and_survive_a_kill(cluster, local_answers, tmp_path):
    env = cluster["env"]
    # more CPUs than the cluster has: one clear line, nothing deployed
    too_many = subprocess.run(
        [str(BIN / "ipex-resnet"), "serve", "--ray", cluster["address"], "--replicas", "3", *MODEL, "--no-tune"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert too_many.returncode == 2 and "need 3 CPUs; the Ray cluster has 2" in too_many.stderr, too_many.stderr[-2000:]
    assert "Traceback" not in too_many.stderr and not replicas()

    proc, port = start_serving(
        ["--ray", cluster["address"], "--replicas", "2", "--replica-cpus", "1", "--ray-proxy", "HeadOnly"],
        env,
        tmp_path / "serve.log",
    )
    try:
        reps = replicas()
        assert len(reps) == 2
        # spread: each replica is a worker of a different raylet (node)
        assert len({p.parent().pid for p in reps}) == 2, [(p.pid, p.parent().name()) for p in reps]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/readyz", timeout=30).json()["backend"] == "onnxruntime"
        v1_local, oip_local = local_answers
        files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in PHOTOS]
        for _ in range(4):  # whichever replica answers
            v1 = httpx.post(url + "/v1/classify?topk=3", files=files, timeout=60).json()
            assert [[t["index"] for t in r["top"]] for r in v1["results"]] == [
                [t["index"] for t in r["top"]] for r in v1_local["results"]
            ]
            oip = oip_infer(f"127.0.0.1:{port}")
            assert oip["indices"] == oip_local["indices"]
            assert np.allclose(oip["scores"], oip_local["scores"], atol=1e-4)
        # bad input: the app's own typed error through Ray's proxy
        bad = httpx.post(
            url + "/v1/classify", content=b"not an image", headers={"content-type": "image/jpeg"}, timeout=60
        )
        assert bad.status_code == 400 and bad.json()["error"]["code"], bad.text

        # a replica killed while requests are in flight: each request answers 200 or a clear error
        victim = reps[0]
        outcomes = kill_under_load(url, victim)
        ok = [o for o in outcomes if o[0] == 200]
        failed = [o for o in outcomes if o[0] != 200]
        assert ok and len(ok) + len(failed) == len(outcomes)
        for status, text in failed:
            assert status in (500, 502, 503, 504) and text.strip(), (status, text)
        wait_replaced(url, victim)
    finally:
        code = stop_serving(proc)
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    deadline = time.monotonic() + 60
    while replicas():  # the app is deleted with the command
        assert time.monotonic() < deadline, "replicas left after the command stopped"
        time.sleep(0.5)
    print(
        json.dumps(
            {"requests": len(outcomes), "failed": len(failed), "failures": sorted({f"{s} {t}" for s, t in failed})}
        )
    )


def test_bad_options_fail_before_ray_starts():
    before = {p.pid for p in ray_processes()}
    r = subprocess.run(
        [str(BIN / "ipex-resnet"), "serve", "--replicas", "2", *MODEL], capture_output=True, text=True, timeout=120
    )  # a Ray Serve option without --ray: refused, not ignored
    assert r.returncode == 2 and "--replicas applies to Ray Serve: add --ray" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(
        [str(BIN / "ipex-resnet"), "serve", "--ray", "127.0.0.1:1", *MODEL], capture_output=True, text=True, timeout=300
    )  # nothing listens there
    assert r.returncode == 2 and "error: cannot join Ray at 127.0.0.1:1: " in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for args, message in (
        (["--replicas", "0"], "--replicas must be a whole number of at least 1"),
        (["--min-replicas", "1"], "autoscaling needs both --min-replicas and --max-replicas"),
        (["--target-ongoing-requests", "2"], "applies to autoscaling"),
    ):
        r = subprocess.run(
            [str(BIN / "ipex-resnet"), "serve", "--ray", *args, *MODEL], capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert {p.pid for p in ray_processes()} <= before  # no Ray started


def test_ray_config_is_a_serve_deploy_config():
    import yaml

    r = subprocess.run(
        [
            str(BIN / "ipex-resnet"),
            "serve",
            "--ray-config",
            *MODEL,
            "--min-replicas",
            "1",
            "--max-replicas",
            "3",
            "--replica-cpus",
            "2",
            "--host",
            "0.0.0.0",
            "--max-batch",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    app = doc["applications"][0]
    assert app["import_path"] == "ipex_resnet.apps.ray_serve:app_builder" and app["route_prefix"] == "/"
    assert doc["http_options"] == {"host": "0.0.0.0", "port": 8000}
    assert app["args"]["model"]["model"] == "mobilenet_v3_small" and app["args"]["config"] == {"max_batch": 8}
    from ipex_resnet.apps.ray_serve import RayServeSpec

    opts = RayServeSpec.from_dict(app["args"]).deployment_options()  # what serve deploy would build
    assert opts["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert opts["ray_actor_options"] == {"num_cpus": 2} and "num_replicas" not in opts


def test_local_ray_serves_and_leaves_no_ray_process(tmp_path):
    assert not ray_processes(), "another Ray instance is running on this machine"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc, port = start_serving(["--ray", "--replicas", "1"], env, tmp_path / "serve.log")
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify",
            content=PHOTOS[0].read_bytes(),
            headers={"content-type": "image/jpeg"},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["backend"] == "onnxruntime"
    finally:
        code = stop_serving(proc)
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
    deadline = time.monotonic() + 60
    while ray_processes():
        assert time.monotonic() < deadline, f"Ray processes left: {[p.pid for p in ray_processes()]}"
        time.sleep(0.5)
