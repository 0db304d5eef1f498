"""MLPerf-style scenarios through MLCommons' own LoadGen: the driver against SUTs of known speed, the
HTTP SUT against the real service on loopback, and ``ipex-resnet bench --scenarios`` on a user's model
through the console script (our service and LitServe started as servers, LoadGen's logs kept)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from user_repo import sh, user_repo  # noqa: F401 - user_repo is a fixture

from ipex_resnet.benchmarking import loadgen as L

pytestmark = pytest.mark.any_stack


def sleeper(per_batch_s: float = 0.0, per_sample_s: float = 0.0, fail_on: int | None = None):
    """A SUT body of known speed: sleeps per batch and per sample; raises on sample ``fail_on``."""

    def run_batch(idx: list[int]):
        if fail_on in idx:
            raise RuntimeError(f"sample {fail_on} is broken")
        time.sleep(per_batch_s + per_sample_s * len(idx))

    return run_batch


def run_queued(run_batch, max_batch: int, scenario: str, rs: L.RunSettings, out) -> dict:
    sut = L.QueuedSUT(run_batch, max_batch)
    try:
        return L.run(sut, scenario, rs, out)
    finally:
        sut.close()


def test_single_stream_and_offline_measure_a_sut_of_known_speed(tmp_path):
    ss = run_queued(
        sleeper(per_batch_s=0.004), 1, "single-stream", L.RunSettings(1.0, 16, expected_qps=250), tmp_path / "ss"
    )
    assert ss["scenario"] == "SingleStream" and 4.0 <= ss["p90_ms"] < 60, ss
    assert (tmp_path / "ss" / "mlperf_log_summary.txt").is_file() and (
        tmp_path / "ss" / "mlperf_log_detail.txt"
    ).is_file()
    # batches of 8 at 4 ms each: at most 2000 samples/s, far more than one at a time (250/s)
    off = run_queued(
        sleeper(per_batch_s=0.004), 8, "offline", L.RunSettings(1.0, 16, expected_qps=3000), tmp_path / "off"
    )
    assert off["scenario"] == "Offline" and off["valid"] and 400 < off["samples_per_s"] <= 2000, off


def test_server_search_finds_the_rate_a_sut_sustains_under_the_bound(tmp_path):
    """One sample at a time, 10 ms each: the SUT saturates at 100 QPS; the highest Poisson rate with
    p99 <= 60 ms lies well below that and well above nothing; above it LoadGen reports the bound missed."""
    sut = L.QueuedSUT(sleeper(per_sample_s=0.010), 1)
    try:
        r = L.server_search(sut, L.RunSettings(2.0, 16, p99_ms=60), tmp_path, upper_qps=200, max_runs=8)
    finally:
        sut.close()
    assert 20 < r["capacity_qps"] < 100, [(t["target_qps"], t["p99_ms"]) for t in r["tried"]]
    assert r["at_capacity"]["p99_ms"] <= 60 and r["at_capacity"]["latency_bound_met"]
    assert any(not t["latency_bound_met"] for t in r["tried"])
    # it ends between a passing and a failing rate within 10%, not after a fixed number of halvings
    lo, hi = r["bracket"]
    assert r["resolved"] and lo == r["capacity_qps"] and lo < hi <= 1.1 * lo, r["bracket"]
    assert any(t["target_qps"] == hi and not t["latency_bound_met"] for t in r["tried"])
    assert r["label"] == "MLPerf-style, not an official MLPerf result"
    assert len(list(tmp_path.glob("qps-*/mlperf_log_summary.txt"))) == len(r["tried"]) <= 8


def test_a_failed_sample_makes_the_run_invalid_and_says_why(tmp_path):
    r = run_queued(
        sleeper(per_batch_s=0.001, fail_on=3), 4, "offline", L.RunSettings(0.5, 8, expected_qps=500), tmp_path
    )
    assert not r["valid"] and r["failed_samples"] >= 1 and "sample 3 is broken" in r["error"], r


def test_summary_parsing_of_a_server_run():
    text = """Scenario : Server
Completed samples per second    : 93.36
Result is : INVALID
  Performance constraints satisfied : Yes
Scheduled samples per second : 93.93
Mean latency (ns)                : 14608316
50.00 percentile latency (ns)   : 10598923
90.00 percentile latency (ns)   : 30060816
99.00 percentile latency (ns)   : 39332912
"""
    r = L.parse_summary(text)
    assert r["scenario"] == "Server" and not r["valid"] and r["latency_bound_met"] is True
    assert r["samples_per_s"] == 93.36 and r["scheduled_qps"] == 93.93
    assert r["p99_ms"] == pytest.approx(39.332912) and r["p50_ms"] == pytest.approx(10.598923)


@pytest.fixture(scope="module")
def service():
    """The real service on loopback, serving the tiny user model (eager) with micro-batching."""
    pytest.importorskip("uvicorn")
    import torch

    import ipex_resnet
    from ipex_resnet.serve import ServeConfig, ServerThread, create_app

    torch.manual_seed(0)
    import importlib.util

    from conftest import FIXTURES

    spec = importlib.util.spec_from_file_location("tiny_user_model", FIXTURES / "usermodels" / "tiny.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    preset = {"resize_size": 80, "crop_size": 64, "mean": 0.5, "std": 0.25}
    loader = lambda: ipex_resnet.load(
        tiny.build(),
        weights=None,
        transforms=preset,
        backend="eager",
        precision="fp32",
        threads=1,
        categories=[f"c{i}" for i in range(10)],
    )
    with ServerThread(create_app(loader, ServeConfig(max_batch=8))) as srv:
        srv.wait_ready()
        yield srv


def test_http_sut_drives_the_real_service_and_counts_refusals(service, photos, tmp_path):
    images = [p.read_bytes() for p in photos[:8]]
    served: list[int] = []
    lock = threading.Lock()

    def check(body: bytes) -> bool:
        with lock:
            served.append(len(json.loads(body)["results"][0]["top"]))
        return True

    sut = L.HttpSUT(service.url + "/v1/classify", lambda i: (images[i], {"content-type": "image/jpeg"}), check=check)
    try:
        r = L.run(sut, "server", L.RunSettings(1.5, len(images), target_qps=20, p99_ms=1000), tmp_path / "ok")
    finally:
        sut.close()
    assert r["latency_bound_met"] and "failed_samples" not in r and r["p99_ms"] < 1000, r
    assert len(served) >= 15 and set(served) == {5}
    # bytes that are not an image: the service answers 4xx, and the run is invalid, naming the answer
    bad = L.HttpSUT(service.url + "/v1/classify", lambda i: (b"not an image", {"content-type": "image/jpeg"}))
    try:
        r = L.run(bad, "offline", L.RunSettings(0.5, 4, expected_qps=20), tmp_path / "bad")
    finally:
        bad.close()
    assert not r["valid"] and r["failed_samples"] >= 1 and r["error"].startswith("HTTP 4"), r


@pytest.mark.slow
def test_bench_scenarios_on_a_user_model_with_service_and_peer(user_repo):
    root, _ = user_repo
    proc = sh(
        user_repo,
        "ipex-resnet bench $BENCH_ARGS --scenarios all --scenario-budget 1 --p99-ms 1000 "
        "--price-per-hour 2.5 -o report.json",
    )
    assert proc.returncode in (0, 3), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((root / "report.json").read_text())
    sc = report["scenarios"]
    # the streams row: one row per stream count that divides the threads (--threads 1: one)
    streams = report["input_pipeline"]["streams"]
    assert set(streams["rows"]) == {"1x1"} and streams["rows"]["1x1"]["img_s"] > 0, streams
    assert "streams x threads on" in proc.stdout
    assert sc["label"] == "MLPerf-style, not an official MLPerf result" and sc["p99_ms_bound"] == 1000
    assert sc["single_stream"]["p90_ms"] > 0 and sc["offline"]["samples_per_s"] > 0
    from ipex_resnet.util.deps import first_missing

    ray_serve = first_missing("ray.serve", "grpc", "fastapi") is None  # 'all' includes it where installed
    assert ("ray_serve" in sc) == ("ray_service" in sc) == ray_serve
    for key in ("server", "server_decode", "service", "peer") + (("ray_serve", "ray_service") if ray_serve else ()):
        assert "error" not in sc[key], sc[key]
        assert sc[key]["capacity_qps"] > 0 and sc[key]["at_capacity"]["p99_ms"] <= 1000, (key, sc[key])
    assert sc["served_vs_offline"] > 0 and sc["served_vs_peer"] > 0 and sc["served_vs_server_decode"] > 0
    assert not ray_serve or (sc["served_vs_ray_serve"] > 0 and "Ray Serve with the same engine" in proc.stdout)
    # our own service on Ray Serve (ipex-resnet serve --ray), beside the service: what the distributed layer costs
    assert not ray_serve or (
        sc["ray_service_vs_service"] > 0
        and "--ray" in sc["ray_service"]["command"]
        and "our service on Ray Serve / the service:" in proc.stdout
    )
    # each service step carries the service's own histograms for that step
    observed = [t["observed"] for t in sc["service"]["tried"]]
    assert observed and all(o["batch_size"]["count"] >= 1 and o["inference_ms"]["mean"] > 0 for o in observed)
    assert "queue wait mean" in proc.stdout and "decoding the JPEGs" in proc.stdout
    logs = root / "report-loadgen"
    for part in ("single-stream", "offline"):
        assert "Result is" in (logs / part / "mlperf_log_summary.txt").read_text()
    for part in ("service", "peer"):
        assert list((logs / part).glob("qps-*/mlperf_log_summary.txt")) and (logs / part / "server.log").is_file()
    assert "MLPerf-style, not an official MLPerf result" in proc.stdout
    compare = sh(user_repo, "ipex-resnet compare report.json --no-chart")
    assert compare.returncode == 0 and f"{sc['service']['capacity_qps']:.1f} (" in compare.stdout, compare.stdout


@pytest.mark.parametrize(
    "extra, words",
    [
        ("--scenarios warp", "unknown scenario 'warp'"),
        ("--scenarios server --p99-ms 0", "--p99-ms must be a positive number"),
        ("--scenarios server --p99-ms -5", "--p99-ms must be a positive number"),
        ("--scenarios offline --scenario-budget 0", "--scenario-budget must be a positive number"),
        (
            "--scenarios offline --scenario-path ipex/int4",
            "--scenario-path 'ipex/int4' is not a path this run measures",
        ),
        ("--price-per-hour -1", "--price-per-hour must be a positive number"),
    ],
)
def test_bad_scenario_options_exit_2_in_one_line(user_repo, extra, words):
    proc = sh(user_repo, f"ipex-resnet bench $BENCH_ARGS {extra}")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr


def test_int8_calibration_copies_stay_out_of_the_logs_beside_the_report(tmp_path):
    """The served INT8 paths get the bench's calibration photos as a folder; that folder is scratch space,
    never the LoadGen log folder kept beside the report (the user's photos must not be copied there)."""
    from types import SimpleNamespace

    from ipex_resnet.benchmarking.matrix import PathSpec
    from ipex_resnet.benchmarking.scenarios import _service_command
    from ipex_resnet.imaging.preset import PresetSpec
    from ipex_resnet.models.spec import ModelSpec

    s = SimpleNamespace(model=ModelSpec("resnet18", "none", PresetSpec(crop_size=64)), p99_ms=100.0)
    b = SimpleNamespace(spec=PathSpec("openvino", "int8", False), plan={"threads": 1})
    logs, scratch = tmp_path / "report-loadgen" / "service", tmp_path / "scratch" / "service"
    cmd = _service_command(s, b, 8, [b"\xff\xd8a", b"\xff\xd8b"], logs, scratch)
    calib = cmd[cmd.index("--calibration") + 1]
    assert calib == str(scratch / "calibration") and sorted(p.name for p in (scratch / "calibration").iterdir()) == [
        "0000.jpg",
        "0001.jpg",
    ]
    assert [p.name for p in logs.iterdir()] == ["preset.json"]
