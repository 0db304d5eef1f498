"""Benchmark toolkit and ``ipex-resnet bench``: the matrix, statistics, slowdown injection, peak RSS,
machine keys, the baseline gate, and one real (small) report run through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from ipex_resnet import report as R
from ipex_resnet.cli import main as cli_main
from ipex_resnet.cpu import merge, parse_cpuinfo, parse_lscpu
from ipex_resnet.errors import ConfigError

from conftest import FIXTURES, REPO

ALL = {"ipex": (True, "IPEX ok"), "inductor": (True, "Inductor"), "eager": (True, "eager")}
NO_IPEX = {**ALL, "ipex": (False, "IPEX is not installed; for it: pip install intel-extension-for-pytorch==2.8.0")}
PEERS_OK = {"onnxruntime": (True, "ort"), "openvino": (True, "ov")}
PEERS_NONE = {"onnxruntime": (False, "onnxruntime is not installed; pip install onnxruntime"),
              "openvino": (False, "openvino is not installed; pip install openvino")}


def cpu(name: str):
    return merge(parse_cpuinfo((FIXTURES / "cpus" / f"{name}.cpuinfo").read_text()),
                 parse_lscpu((FIXTURES / "cpus" / f"{name}.lscpu").read_text()))


def names(paths):
    return [p.name for p in paths]


# --- the matrix -------------------------------------------------------------------------------

def test_matrix_native_bf16_cpu_runs_everything():
    paths, skipped = R.matrix(cpu("sapphire_rapids"), availability=ALL, peer_availability=PEERS_OK)
    assert names(paths) == ["ipex/fp32", "ipex/bf16", "inductor/fp32", "inductor/bf16", "eager/fp32", "eager/bf16",
                            "onnxruntime/fp32", "openvino/fp32", "openvino/bf16"]
    assert skipped == {}
    assert [p.kind for p in paths].count("peer") == 3


def test_matrix_skips_emulated_bf16_unless_asked():
    paths, skipped = R.matrix(cpu("skylake_sp"), availability=ALL, peer_availability=PEERS_OK)
    assert "ipex/bf16" not in names(paths) and "emulated" in skipped["ipex/bf16"]
    assert "openvino/bf16" in skipped
    paths, skipped = R.matrix(cpu("skylake_sp"), availability=ALL, peer_availability=PEERS_OK, emulated_bf16=True)
    assert "ipex/bf16" in names(paths) and "ipex/bf16" not in skipped


def test_matrix_unavailable_backend_and_peers_are_skipped_with_the_hint():
    paths, skipped = R.matrix(cpu("sapphire_rapids"), ["ipex", "inductor"], ["fp32"], availability=NO_IPEX,
                              peer_availability=PEERS_NONE)
    assert "pip install intel-extension-for-pytorch" in skipped["ipex/fp32"]
    assert "pip install onnxruntime" in skipped["onnxruntime/fp32"]
    # the eager FP32 reference is always measured: every ratio is taken against it
    assert names(paths) == ["eager/fp32", "inductor/fp32"]


def test_option_parsing_errors_name_the_bad_value():
    assert R.parse_list("Eager, ipex,eager", ("ipex", "inductor", "eager"), "backend") == ["eager", "ipex"]
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        R.parse_list("eager,tvm", ("ipex", "inductor", "eager"), "backend")
    assert R.parse_batch_sizes("32,8") == [1, 8, 32]
    with pytest.raises(ConfigError, match="at least 1"):
        R.parse_batch_sizes("0")
    with pytest.raises(ConfigError, match="not a whole number"):
        R.parse_batch_sizes("8,big")


# --- statistics -------------------------------------------------------------------------------

def test_quantiles_match_numpy():
    rng = np.random.default_rng(1)
    xs = list(rng.lognormal(size=101))
    for q in (0.25, 0.5, 0.9, 0.99):
        assert R.quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))
    s = R.summarize([0.010, 0.020, 0.030])
    assert s["p50_ms"] == pytest.approx(20.0) and s["n"] == 3 and s["min_ms"] == pytest.approx(10.0)


def test_ratio_estimators_see_a_ten_percent_change_through_noise():
    rng = np.random.default_rng(2)
    ref = list(0.02 * (1 + rng.exponential(0.05, 200)))
    noise = rng.exponential(0.05, 200)
    cand = [r * 1.10 * (1 + n) / (1 + m) for r, n, m in zip(ref, noise, rng.exponential(0.05, 200))]
    est = R.ratio_estimates(cand, ref)
    assert set(est) == set(R.RATIO_ESTIMATORS)
    for name in ("p50", "paired", "p25"):
        assert 1.05 < est[name] < 1.15, (name, est[name])


def _spin(seconds: float):
    def f(_x=None):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
    return f


def test_injected_slowdown_is_caught_by_interleaved_ratio_and_reference_is_untouched():
    work = _spin(0.005)
    assert R.inject_slowdown(work, 0.0) is work
    slowed = R.inject_slowdown(work, 0.10)
    # The slowdown spins on the measured time of each call, so even a preempted call is 10% longer.
    t0 = time.perf_counter()
    slowed(None)
    assert time.perf_counter() - t0 >= 0.0055
    ratio, cand, ref = R.interleaved_ratio(slowed, work, None, rounds=40)
    assert len(cand) == len(ref) == 40
    assert 1.05 < ratio < 1.25
    same, _, _ = R.interleaved_ratio(work, work, None, rounds=40)
    assert 0.93 < same < 1.07


def test_time_interleaved_rotates_order_and_counts_calls():
    calls: list[str] = []
    runners = {n: (lambda x, n=n: calls.append(n)) for n in "abc"}
    out = R.time_interleaved(runners, None, rounds=3, calls_per_round=2, switch_warmup=1)
    assert {k: len(v) for k, v in out.items()} == {"a": 6, "b": 6, "c": 6}
    assert calls[0] == "a" and calls[9] == "b" and calls[18] == "c"  # each round starts one later


def test_slowdown_env_is_validated(monkeypatch):
    monkeypatch.setenv(R.SLOWDOWN_ENV, "0.1")
    assert R.slowdown_fraction() == pytest.approx(0.1)
    monkeypatch.setenv(R.SLOWDOWN_ENV, "ten")
    with pytest.raises(ConfigError, match=R.SLOWDOWN_ENV):
        R.slowdown_fraction()


def test_peak_rss_sees_a_transient_allocation():
    with R.PeakRSS() as mem:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        del block
    assert mem.delta_mb > 150, mem.delta_mb
    assert mem.peak_mb >= mem.before_mb
    with R.PeakRSS() as idle:
        pass
    assert idle.delta_mb < 50


# --- machine keys and the gate ----------------------------------------------------------------

def test_machine_key_separates_skus_and_stacks():
    v28 = {"torch": "2.8.0+cpu", "intel_extension_for_pytorch": "2.8.0+cpu"}
    v214 = {"torch": "2.14.1", "intel_extension_for_pytorch": None}
    keys = {R.machine_key(cpu("sapphire_rapids"), v28, 56), R.machine_key(cpu("ice_lake"), v28, 56),
            R.machine_key(cpu("sapphire_rapids"), v214, 56), R.machine_key(cpu("sapphire_rapids"), v28, 8)}
    assert len(keys) == 4
    k = R.machine_key(cpu("sapphire_rapids"), v28, 56)
    assert "avx512_core_amx" in k and "torch2.8.0" in k and "ipex2.8.0" in k and "/" not in k and " " not in k


def _bench(name, ratio=None, path="ipex/bf16", **mem):
    info = {"path": path, **mem}
    if ratio is not None:
        info["ratio_to_ref"] = ratio
    return {"fullname": name, "extra_info": info}


def test_gate_flags_time_ratio_and_memory_regressions_only():
    base = [_bench("lat[ipex]", 0.40, load_delta_rss_mb=300, infer_delta_rss_mb=10),
            _bench("lat[eager]", 1.00, path=R.REFERENCE),
            _bench("thr[ipex]", 0.30)]
    same = [_bench("lat[ipex]", 0.41, load_delta_rss_mb=305, infer_delta_rss_mb=20),
            _bench("lat[eager]", 1.30, path=R.REFERENCE),  # the reference vs itself is never judged
            _bench("thr[ipex]", 0.29), _bench("new[x]", 5.0)]
    res = R.gate(same, base, time_tolerance=0.06)
    assert res.ok and res.missing == ["new[x]"]
    assert len(res.checked) == 4
    slow = [_bench("lat[ipex]", 0.40 * 1.10, load_delta_rss_mb=300, infer_delta_rss_mb=10),
            _bench("thr[ipex]", 0.30)]
    res = R.gate(slow, base, time_tolerance=0.06)
    assert not res.ok and [(f.name, f.metric) for f in res.regressions] == [("lat[ipex]", "ratio_to_ref")]
    assert "+10.0%" in res.regressions[0].describe()
    fat = [_bench("lat[ipex]", 0.40, load_delta_rss_mb=400, infer_delta_rss_mb=10)]
    res = R.gate(fat, base)
    assert [(f.metric) for f in res.regressions] == ["load_delta_rss_mb"]


# --- the CLI, for real ------------------------------------------------------------------------

def test_bench_cli_rejects_bad_options_in_one_line(capsys):
    assert cli_main(["bench", "--backends", "eager,tvm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown backend 'tvm'") and "\n" not in err
    assert cli_main(["bench", "--batch-sizes", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert cli_main(["bench", "--model", "resnet1800"]) == 2
    assert "unknown model" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_cli_writes_a_complete_report(tmp_path):
    from ipex_resnet import peers

    want_peer = peers.status("onnxruntime")[0]
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "ipex_resnet.cli", "bench", "--quick", "--backends", "eager", "--precisions", "fp32",
           "--peers", "onnxruntime" if want_peer else "none", "--batch-sizes", "2", "--budget", "0.5",
           "--output", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["schema"] == R.REPORT_SCHEMA and doc["batch_sizes"] == [1, 2]
    assert doc["cpu"]["model_name"] and doc["versions"]["torch"] and doc["threads"]["used"] >= 1
    assert doc["plan"]["backend"] in ("ipex", "inductor", "eager")
    ref = doc["paths"]["eager/fp32"]
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        assert ref["latency"]["1"][key] > 0
    assert ref["latency"]["1"]["p99_ms"] >= ref["latency"]["1"]["p50_ms"]
    assert ref["throughput"]["2"] > 0 and ref["load_peak_rss_mb"] > 0
    assert ref["speedup"]["vs_eager_fp32"]["2"] == pytest.approx(1.0)
    assert ref["end_to_end"]["1920x1080"]["p50_ms"] > 0
    if want_peer:
        assert "onnxruntime/fp32" in doc["paths"] and "latency_b1" in doc["targets"]
        assert ref["speedup"]["best_peer"]["2"] == "onnxruntime/fp32"
    # the table went to stdout, the progress to stderr
    assert "eager/fp32" in proc.stdout and "p50 ms" in proc.stdout and str(out) in proc.stdout
    assert "loading eager/fp32" in proc.stderr
