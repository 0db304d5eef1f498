"""The benchmarking package: options declared once, the matrix from the engine registry, pluggable
peers, statistics, peak RSS (this process and a child's), cold-start timing, machine keys, the gate,
targets, and one real (small) ``ipex-resnet bench`` run through the CLI."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES, REPO

from ipex_resnet.benchmarking import coldstart, machine
from ipex_resnet.benchmarking import gate as G
from ipex_resnet.benchmarking import matrix as M
from ipex_resnet.benchmarking import options as O
from ipex_resnet.benchmarking import peers as P
from ipex_resnet.benchmarking import report as Rep
from ipex_resnet.benchmarking import timing as T
from ipex_resnet.benchmarking.memory import ChildPeakRSS, PeakRSS
from ipex_resnet.cli import main as cli_main
from ipex_resnet.errors import ConfigError
from ipex_resnet.hardware.cpu import merge, parse_cpuinfo, parse_lscpu

pytestmark = pytest.mark.any_stack

ALL = {
    "ipex": (True, "IPEX ok"),
    "inductor": (True, "Inductor"),
    "openvino": (True, "ov"),
    "onnxruntime": (True, "ort"),
    "eager": (True, "eager"),
}
NO_IPEX = {**ALL, "ipex": (False, "IPEX is not installed; for it: pip install intel-extension-for-pytorch==2.8.0")}
PEERS_OK = dict.fromkeys(P.REGISTRY, (True, "ok"))
PEERS_NONE = {
    name: (False, f"{name.split('/')[0]} is not installed; pip install {name.split('/')[0]}") for name in P.REGISTRY
}
NO_INT8 = dict.fromkeys(ALL, "not installed in this build")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(tmp_path / "cache"))


def cpu(name: str):
    return merge(
        parse_cpuinfo((FIXTURES / "cpus" / f"{name}.cpuinfo").read_text()),
        parse_lscpu((FIXTURES / "cpus" / f"{name}.lscpu").read_text()),
    )


def names(paths):
    return [p.name for p in paths]


# --- the matrix -------------------------------------------------------------------------------


def test_matrix_native_bf16_cpu_runs_every_engine_at_its_precisions_plus_peers():
    paths, skipped = M.matrix(cpu("sapphire_rapids"), availability=ALL, peer_availability=PEERS_OK, int8=NO_INT8)
    assert names(paths) == [
        "ipex/fp32",
        "ipex/bf16",
        "inductor/fp32",
        "inductor/bf16",
        "openvino/fp32",
        "openvino/bf16",
        "onnxruntime/fp32",
        "eager/fp32",
        "eager/bf16",
        "onnxruntime/fp32 (peer)",
        "openvino/fp32 (peer)",
        "openvino/bf16 (peer)",
    ]
    assert skipped == {}  # int8 is not asked for and no int8 flow is installed: not in the matrix at all
    assert [p.kind for p in paths].count("peer") == 3


def test_matrix_int8_when_its_flow_exists_or_is_asked_for():
    ready = {**NO_INT8, "inductor": None}
    paths, skipped = M.matrix(cpu("sapphire_rapids"), availability=ALL, peer_availability=PEERS_OK, int8=ready)
    assert "inductor/int8" in names(paths) and "openvino/int8 (peer)" in names(paths)
    assert "not installed" in skipped["ipex/int8"] and "eager/int8" not in skipped  # eager has no int8
    paths, skipped = M.matrix(
        cpu("sapphire_rapids"), precisions=["int8"], availability=ALL, peer_availability=PEERS_NONE, int8=NO_INT8
    )
    assert names(paths) == ["eager/fp32"]  # only the reference
    assert "not installed" in skipped["inductor/int8"] and "pip install" in skipped["onnxruntime/int8 (peer)"]


def test_matrix_skips_emulated_bf16_unless_asked():
    paths, skipped = M.matrix(cpu("skylake_sp"), availability=ALL, peer_availability=PEERS_OK, int8=NO_INT8)
    assert "ipex/bf16" not in names(paths) and "emulated" in skipped["ipex/bf16"]
    assert "openvino/bf16 (peer)" in skipped and "openvino/bf16" not in names(paths)
    paths, skipped = M.matrix(
        cpu("skylake_sp"), availability=ALL, peer_availability=PEERS_OK, emulated_bf16=True, int8=NO_INT8
    )
    assert "ipex/bf16" in names(paths) and "ipex/bf16" not in skipped
    # OpenVINO runs no BF16 without native support: asked for explicitly, it says so
    _, skipped = M.matrix(cpu("skylake_sp"), ["openvino"], ["bf16"], availability=ALL, peers=[], int8=NO_INT8)
    assert skipped["openvino/bf16"] == "openvino runs fp32, int8 on this CPU"


def test_matrix_unavailable_engines_and_peers_are_skipped_with_the_hint():
    paths, skipped = M.matrix(
        cpu("sapphire_rapids"),
        ["ipex", "inductor"],
        ["fp32"],
        availability=NO_IPEX,
        peer_availability=PEERS_NONE,
        int8=NO_INT8,
    )
    assert "pip install intel-extension-for-pytorch" in skipped["ipex/fp32"]
    assert "pip install onnxruntime" in skipped["onnxruntime/fp32 (peer)"]
    # the eager FP32 reference is always measured: every ratio is taken against it
    assert names(paths) == ["eager/fp32", "inductor/fp32"]


def test_a_peer_row_is_one_registration():
    row = P.Peer(
        "onnxruntime", "bf16", lambda src: lambda x: x, ("onnxruntime",), "pip install onnxruntime", "test row"
    )
    P.register(row)
    try:
        with pytest.raises(ValueError, match="registered twice"):
            P.register(row)
        paths, _ = M.matrix(
            cpu("sapphire_rapids"),
            ["eager"],
            ["fp32", "bf16"],
            availability=ALL,
            peer_availability={**PEERS_OK, row.name: (True, "ok")},
            int8=NO_INT8,
        )
        assert "onnxruntime/bf16 (peer)" in names(paths)
    finally:
        del P.REGISTRY[row.name]


# --- options: one declaration, two front ends -------------------------------------------------


@pytest.mark.filterwarnings("ignore::pytest.PytestDeprecationWarning")  # pytest's own Parser, built directly
def test_cli_and_pytest_options_come_from_one_declaration():
    from _pytest.config.argparsing import Parser

    cli = argparse.ArgumentParser()
    O.add_cli_arguments(cli)
    pyt = Parser()
    O.add_pytest_options(pyt.getgroup("bench"))
    cli_flags = {a for act in cli._actions for a in act.option_strings}
    py_flags = {name for opt in pyt.getgroup("bench").options for name in opt.names()}
    for o in O.OPTIONS:
        assert (o.cli_flag in cli_flags) == (O.CLI in o.scopes), o.dest
        assert (o.pytest_flag in py_flags) == (O.PYTEST in o.scopes), o.dest
    shared = [o for o in O.OPTIONS if set(o.scopes) == {O.CLI, O.PYTEST}]
    assert {o.dest for o in shared} >= {"model", "threads", "batch_sizes", "backends", "precisions", "peers", "quick"}
    # the same values parse to the same settings from either front end
    args = cli.parse_args(
        ["--backends", "eager", "--precisions", "fp32", "--peers", "none", "--batch-sizes", "4", "--quick"]
    )
    ns = pyt.parse(
        [
            "--bench-backends",
            "eager",
            "--bench-precisions",
            "fp32",
            "--bench-peers",
            "none",
            "--bench-batch-sizes",
            "4",
            "--bench-quick",
        ]
    )
    from_cli = O.settings(O.raw_from_cli(args))
    from_pytest = O.settings({o.dest: getattr(ns, "bench_" + o.dest) for o in O.OPTIONS if O.PYTEST in o.scopes})
    for key in ("model", "threads", "batch_sizes", "backends", "precisions", "peers", "quick"):
        assert getattr(from_cli, key) == getattr(from_pytest, key), key
    assert from_cli.batch_sizes == [1, 4] and from_cli.peers == [] and from_cli.backends == ["eager"]


def test_option_parsing_errors_name_the_bad_value():
    assert O.parse_list("Eager, ipex,eager", ("ipex", "inductor", "eager"), "backend") == ["eager", "ipex"]
    with pytest.raises(ConfigError, match="unknown backend 'tvm'"):
        O.parse_list("eager,tvm", ("ipex", "inductor", "eager"), "backend")
    assert O.parse_batch_sizes("32,8") == [1, 8, 32]
    with pytest.raises(ConfigError, match="at least 1"):
        O.parse_batch_sizes("0")
    with pytest.raises(ConfigError, match="not a whole number"):
        O.parse_batch_sizes("8,big")
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        O.settings({"precisions": "fp8"})
    with pytest.raises(ConfigError, match="unknown peer 'tensorrt'"):
        O.settings({"peers": "tensorrt"})
    with pytest.raises(ConfigError, match="is not a directory"):
        O.settings({"images": "/nonexistent/dir"})


# --- statistics and timing --------------------------------------------------------------------


def test_quantiles_match_numpy():
    rng = np.random.default_rng(1)
    xs = list(rng.lognormal(size=101))
    for q in (0.25, 0.5, 0.9, 0.99):
        assert T.quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)))
    s = T.summarize([0.010, 0.020, 0.030])
    assert s["p50_ms"] == pytest.approx(20.0) and s["n"] == 3 and s["min_ms"] == pytest.approx(10.0)


def test_ratio_estimators_see_a_ten_percent_change_through_noise():
    rng = np.random.default_rng(2)
    ref = list(0.02 * (1 + rng.exponential(0.05, 200)))
    noise = rng.exponential(0.05, 200)
    cand = [r * 1.10 * (1 + n) / (1 + m) for r, n, m in zip(ref, noise, rng.exponential(0.05, 200))]
    est = T.ratio_estimates(cand, ref)
    assert set(est) == set(T.RATIO_ESTIMATORS)
    for name in ("p50", "paired", "p25"):
        assert 1.05 < est[name] < 1.15, (name, est[name])


class VirtualClock:
    """A clock that moves only when work is "done" on it (and by one tick per reading), so timing
    logic is tested exactly, whatever else the machine is doing."""

    TICK = 1e-6

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.TICK
        return self.now

    def work(self, seconds: float):
        def f(_x=None):
            self.now += seconds

        return f


def test_injected_slowdown_is_caught_by_paired_ratio_and_reference_is_untouched():
    clock = VirtualClock()
    work = clock.work(0.005)
    assert T.inject_slowdown(work, 0.0, clock=clock) is work
    slowed = T.inject_slowdown(work, 0.10, clock=clock)
    t0 = clock()
    slowed(None)
    assert 0.0055 <= clock() - t0 < 0.0056  # 10% more than the work, to the clock's tick
    ratio, cand, ref = T.paired_ratio(slowed, work, None, rounds=40, clock=clock)
    assert len(cand) == len(ref) == 40
    assert 1.10 <= ratio < 1.101
    same, _, _ = T.paired_ratio(work, work, None, rounds=40, clock=clock)
    assert abs(same - 1.0) < 1e-3


def test_time_interleaved_rotates_order_and_counts_calls():
    calls: list[str] = []
    runners = {n: (lambda x, n=n: calls.append(n)) for n in "abc"}
    out = T.time_interleaved(runners, None, rounds=3, calls_per_round=2, switch_warmup=1)
    assert {k: len(v) for k, v in out.items()} == {"a": 6, "b": 6, "c": 6}
    assert calls[0] == "a" and calls[9] == "b" and calls[18] == "c"  # each round starts one later


def test_time_for_respects_the_budget_and_the_minimum():
    clock = VirtualClock()
    samples = T.time_for(clock.work(0.002), None, 0.05, clock=clock)
    assert len(samples) == 25 and min(samples) >= 0.002  # 25 calls of 2 ms fill 50 ms
    assert len(T.time_for(clock.work(0.01), None, 0.0, min_calls=3, clock=clock)) == 3


def test_slowdown_env_is_validated(monkeypatch):
    monkeypatch.setenv(T.SLOWDOWN_ENV, "0.1")
    assert T.slowdown_fraction() == pytest.approx(0.1)
    monkeypatch.setenv(T.SLOWDOWN_ENV, "ten")
    with pytest.raises(ConfigError, match=T.SLOWDOWN_ENV):
        T.slowdown_fraction()


# --- memory -----------------------------------------------------------------------------------


def test_peak_rss_sees_a_transient_allocation():
    with PeakRSS() as mem:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        del block
    assert mem.delta_mb > 150, mem.delta_mb
    assert mem.peak_mb >= mem.before_mb
    with PeakRSS() as idle:
        pass
    assert idle.delta_mb < 50


def test_child_peak_rss_is_that_childs_own():
    """A child's own peak: not inflated by this (large) parent, and it sees a transient allocation."""
    code = "import time, numpy as np; b = np.ones({n} * 2**20 // 8); del b; time.sleep(0.3)"
    hold = np.ones(400 * 2**20 // 8)  # this process is large when it forks
    peaks = {}
    for n in (16, 300):
        proc = subprocess.Popen([sys.executable, "-c", code.format(n=n)])
        mem = ChildPeakRSS(proc.pid)
        assert proc.wait() == 0
        peaks[n] = mem.stop()
    del hold
    assert peaks[16] < 200, peaks  # a small Python process, not a copy of this one
    assert peaks[300] - peaks[16] > 250, peaks


# --- cold start -------------------------------------------------------------------------------


def test_time_classify_stops_the_clock_at_the_fifth_score_line(tmp_path):
    script = tmp_path / "fake_classify.py"  # prints like `ipex-resnet classify`, then lingers
    script.write_text(
        "import sys, time\nprint('one.jpg', flush=True)\n"
        "for i in range(5):\n    print(f'   {20 - i}.00%  label{i} ({i})', flush=True)\n"
        "time.sleep(0.6)\n"
    )
    out = coldstart.time_classify([sys.executable, str(script)])
    assert "error" not in out and out["exit_code"] == 0
    assert out["to_first_top5_s"] < out["to_exit_s"] - 0.4
    bad = coldstart.time_classify([sys.executable, "-c", "import sys; sys.exit('error: no such backend')"])
    assert bad["error"] == "exit 1: error: no such backend"


def test_cold_start_targets_by_engine_kind():
    assert coldstart.target_for("openvino") == (1.5, pytest.approx(273.0))
    assert coldstart.target_for("onnxruntime")[0] == 1.5
    assert coldstart.target_for("inductor") == (3.0, None) and coldstart.target_for("eager") == (3.0, None)


# --- machine keys, the gate, the targets ------------------------------------------------------


def test_machine_key_separates_skus_and_stacks():
    v28 = {"torch": "2.8.0+cpu", "intel_extension_for_pytorch": "2.8.0+cpu"}
    v214 = {"torch": "2.14.1", "intel_extension_for_pytorch": None}
    keys = {
        machine.machine_key(cpu("sapphire_rapids"), v28, 56),
        machine.machine_key(cpu("ice_lake"), v28, 56),
        machine.machine_key(cpu("sapphire_rapids"), v214, 56),
        machine.machine_key(cpu("sapphire_rapids"), v28, 8),
    }
    assert len(keys) == 4
    k = machine.machine_key(cpu("sapphire_rapids"), v28, 56)
    assert "avx512_core_amx" in k and "torch2.8.0" in k and "ipex2.8.0" in k and "/" not in k and " " not in k


def _bench(name, ratio=None, path="ipex/bf16", **mem):
    info = {"path": path, **mem}
    if ratio is not None:
        info["ratio_to_ref"] = ratio
    return {"fullname": name, "extra_info": info}


def test_gate_flags_time_ratio_and_memory_regressions_only():
    base = [
        _bench("lat[ipex]", 0.40, load_delta_rss_mb=300, infer_delta_rss_mb=10),
        _bench("lat[eager]", 1.00, path=M.REFERENCE),
        _bench("thr[ipex]", 0.30),
    ]
    same = [
        _bench("lat[ipex]", 0.41, load_delta_rss_mb=305, infer_delta_rss_mb=20),
        _bench("lat[eager]", 1.30, path=M.REFERENCE),  # the reference vs itself is never judged
        _bench("thr[ipex]", 0.29),
        _bench("new[x]", 5.0),
    ]
    res = G.gate(same, base, time_tolerance=0.06)
    assert res.ok and res.missing == ["new[x]"]
    assert len(res.checked) == 4
    slow = [_bench("lat[ipex]", 0.40 * 1.10, load_delta_rss_mb=300, infer_delta_rss_mb=10), _bench("thr[ipex]", 0.30)]
    res = G.gate(slow, base, time_tolerance=0.06)
    assert not res.ok and [(f.name, f.metric) for f in res.regressions] == [("lat[ipex]", "ratio_to_ref")]
    assert "+10.0%" in res.regressions[0].describe()
    fat = [_bench("lat[ipex]", 0.40, load_delta_rss_mb=400, infer_delta_rss_mb=10)]
    res = G.gate(fat, base)
    assert [(f.metric) for f in res.regressions] == ["load_delta_rss_mb"]


def _row(kind, precision, p50, thr, alone_p50=None):
    r = {"kind": kind, "precision": precision, "latency": {"1": {"p50_ms": p50}}, "throughput": {"32": thr}}
    if alone_p50:
        r["alone"] = {"latency": {"1": {"p50_ms": alone_p50}}, "throughput": {"32": thr}}
    return r


def test_peer_ratios_and_targets_compare_at_the_same_precision():
    doc = {
        "batch_sizes": [1, 32],
        "paths": {
            "inductor/bf16": _row("ipex_resnet", "bf16", 10.5, 100.0, alone_p50=9.0),
            "inductor/fp32": _row("ipex_resnet", "fp32", 20.0, 50.0),
            "eager/fp32": _row("ipex_resnet", "fp32", 30.0, 35.0),
            "openvino/bf16 (peer)": _row("peer", "bf16", 10.0, 110.0, alone_p50=10.0),
            "onnxruntime/fp32 (peer)": _row("peer", "fp32", 18.0, 60.0),
        },
        "cold_start": {
            "onnxruntime": {
                "to_first_top5_s": 0.9,
                "target_s": 1.5,
                "met_time": True,
                "peak_rss_mb": 300.0,
                "target_rss_mb": 273.0,
                "met_rss": False,
            }
        },
    }
    Rep.add_ratios(doc["paths"], doc["batch_sizes"])
    ind = doc["paths"]["inductor/bf16"]["speedup"]
    assert ind["vs_best_peer_interleaved"]["latency_peer"] == "openvino/bf16 (peer)"  # not the fp32 peer
    assert ind["vs_best_peer_interleaved"]["latency_b1"] == pytest.approx(1.05)
    assert ind["vs_best_peer_alone"]["latency_b1"] == pytest.approx(0.9)
    assert doc["paths"]["inductor/fp32"]["speedup"]["vs_best_peer_interleaved"]["throughput_b32"] == pytest.approx(
        50 / 60
    )
    found = {(t["mode"], t["name"]): t for t in Rep.targets(doc)}
    assert not found[("interleaved", "bf16 b1 latency, best path vs best peer")]["met"]
    assert found[("alone", "bf16 b1 latency, best path vs best peer")]["met"]
    assert found[("interleaved", "native stack: inductor/bf16 b1 latency vs openvino/bf16 peer")]["met"]  # 1.05
    assert not found[("interleaved", "fp32 b32 throughput, best path vs best peer")]["met"]
    assert found[("fresh process", "cold start onnxruntime (process -> first top-5)")]["met"]
    assert not found[("fresh process", "cold start onnxruntime peak RSS (lean path)")]["met"]


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
    want_peer = P.REGISTRY["onnxruntime/fp32"].status()[0]
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "ipex_resnet.cli",
        "bench",
        "--quick",
        "--backends",
        "eager",
        "--precisions",
        "fp32",
        "--peers",
        "onnxruntime" if want_peer else "none",
        "--batch-sizes",
        "2",
        "--budget",
        "0.5",
        "--alone-budget",
        "0.4",
        "--threads",
        "1",
        "--output",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["schema"] == Rep.REPORT_SCHEMA and doc["batch_sizes"] == [1, 2]
    assert doc["cpu"]["model_name"] and doc["versions"]["torch"] and doc["threads"]["used"] == 1
    assert doc["inputs"]["crop_size"] == 224  # from resnet18's preset
    ref = doc["paths"]["eager/fp32"]
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        assert ref["latency"]["1"][key] > 0
    assert ref["latency"]["1"]["p99_ms"] >= ref["latency"]["1"]["p50_ms"]
    assert ref["throughput"]["2"] > 0 and ref["load_peak_rss_mb"] > 0
    assert ref["speedup"]["vs_eager_fp32"]["2"] == pytest.approx(1.0)
    assert ref["end_to_end"]["1920x1080"]["p50_ms"] > 0
    # alone, in a fresh process
    assert ref["alone"]["latency"]["1"]["p50_ms"] > 0 and ref["alone"]["throughput"]["2"] > 0
    assert ref["alone"]["peak_rss_mb"] > 50
    # cold start of classify with a warm cache
    cold = doc["cold_start"]["eager"]
    assert "error" not in cold and 0 < cold["to_first_top5_s"] <= cold["to_exit_s"] and cold["peak_rss_mb"] > 50
    assert any(t["name"].startswith("cold start eager") for t in doc["targets"])
    if want_peer:
        peer = doc["paths"]["onnxruntime/fp32 (peer)"]
        assert peer["kind"] == "peer" and peer["alone"]["latency"]["1"]["p50_ms"] > 0
        assert peer["alone"]["imported_torch"] is False  # a peer alone is the runtime, numpy and nothing else
        assert ref["speedup"]["vs_best_peer_interleaved"]["latency_peer"] == "onnxruntime/fp32 (peer)"
        assert {t["mode"] for t in doc["targets"] if "peer" in t} == {"interleaved", "alone"}
    # the table went to stdout, the progress to stderr
    assert "eager/fp32" in proc.stdout and "alone p50" in proc.stdout and str(out) in proc.stdout
    assert "cold start (classify, warm cache)" in proc.stdout
    assert "loading eager/fp32" in proc.stderr


def test_input_pipeline_targets_ratios_and_the_decode_floor_bound():
    """End to end vs the same path's b1 latency, with the bound the decode floor puts on it; bulk vs
    model-only; and the lines the report prints."""
    from ipex_resnet.benchmarking import pipeline as Pipe

    doc = {
        "batch_sizes": [1, 32],
        "cold_start": {},
        "skipped": {},
        "paths": {
            "openvino/bf16": {
                "kind": "ipex_resnet",
                "precision": "bf16",
                "latency": {"1": {"p50_ms": 4.0}},
                "throughput": {},
                "end_to_end": {"photo": {"p50_ms": 4.4}, "1920x1080": {"p50_ms": 8.0}},
            }
        },
        "input_pipeline": {
            "path": "openvino/bf16",
            "costs": {
                "photo": {"size": "500x375", "decode_floor_ms": 0.8},
                "1920x1080": {"size": "1920x1080", "decode_floor_ms": 2.4},
            },
            "bulk": {
                "path": "openvino/bf16",
                "count": 320,
                "batch_size": 32,
                "threads": 1,
                "spare_cores": 1,
                "images_per_s": 120.0,
                "model_only_images_per_s": 130.0,
                "ratio": 120 / 130,
                "preprocess_ms_mean": 1.8,
                "bound": 0.83,
            },
        },
    }
    found = Rep.targets(doc)
    photo = next(t for t in found if "end to end, 500x375" in t["name"])
    large = next(t for t in found if "end to end, 1920x1080" in t["name"])
    assert photo["ratio"] == pytest.approx(1.1) and photo["met"] and photo["bound"] == pytest.approx(1.2)
    assert large["ratio"] == pytest.approx(2.0) and not large["met"] and large["bound"] == pytest.approx(1.6)
    bulk = next(t for t in Rep.targets(doc) if t["name"].startswith("bulk"))
    assert bulk["met"] and bulk["ratio"] == pytest.approx(0.923, abs=1e-3)
    assert "decode floor alone bounds it at >= 1.60x" in Rep.describe_target(large)
    assert "NOT met" in Rep.describe_target(large) and "1 spare core" in Rep.describe_target(bulk)
    assert "(1.8 ms per image) bounds it at <= 0.83x" in Rep.describe_target(bulk)
    doc["input_pipeline"]["bulk"]["ratio"] = 0.85
    assert not next(t for t in Rep.targets(doc) if t["name"].startswith("bulk"))["met"]
    assert Pipe.pick_photos([_jpeg(640, 480), _jpeg(500, 375)], n=1) == [_jpeg(500, 375)]


def _jpeg(w: int, h: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, "JPEG")
    return buf.getvalue()
