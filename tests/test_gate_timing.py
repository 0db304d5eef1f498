"""The package gate's timing and its bookkeeping: each fresh process's ratio, the noise floor and its verdicts, the report's
``gate`` section as the gate's entries, and baselines timed another way refused.
(The whole path, on a user's model in subprocesses: test_gate_cli.py.)"""

from __future__ import annotations

import json

import pytest

from ipex_resnet.benchmarking import baseline as B
from ipex_resnet.benchmarking import gate_timing as GT
from ipex_resnet.benchmarking import noise as N
from ipex_resnet.benchmarking import verdict as V
from ipex_resnet.benchmarking.gate import gate
from ipex_resnet.errors import ConfigError
from ipex_resnet.models.spec import ModelSpec

pytestmark = pytest.mark.any_stack


def test_gate_times_batch_one_and_the_smallest_batch_above_it():
    assert GT.batch_sizes([1, 8, 32]) == [1, 8]
    assert GT.batch_sizes([1]) == [1]
    assert GT.batch_sizes([1, 2]) == [1, 2]


def test_each_process_ratio_over_what_every_process_measured():
    per = [
        {"a/fp32": {"1": [0.010, 0.040], "8": [0.08, 0.32]}, "b/fp32": {"1": [0.02, 0.04]}},
        {"a/fp32": {"1": [0.012, 0.040], "8": [0.09, 0.30]}},
        {"a/fp32": {"1": [0.011, 0.044], "8": [0.07, 0.28]}, "b/fp32": {"1": [0.03, 0.04]}},
    ]
    assert GT.process_ratios(per) == {"a/fp32": {"1": [0.25, 0.3, 0.25], "8": [0.25, 0.3, 0.25]}}


def test_gate_processes_keep_malloc_from_returning_memory_unless_the_user_chose():
    env = GT.child_env({"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == "1" and int(env["MALLOC_MMAP_THRESHOLD_"]) >= 1 << 30
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= 1 << 30 and env["PATH"] == "/bin"
    assert GT.child_env({"MALLOC_MMAP_THRESHOLD_": "65536"})["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_noise_floor_judges_change_against_spread():
    quiet = [0.500, 0.502, 0.498, 0.501]
    j = N.judge(quiet, [0.520, 0.522, 0.519], 0.025)  # +4% with ~0.3% noise: a regression
    assert j.verdict == N.REGRESSION and 0 < j.floor < 0.025 and j.detectable == 0.025
    assert N.judge(quiet, [0.505, 0.503, 0.507], 0.025).verdict == N.PASS  # +1%: within the tolerance
    noisy = [0.45, 0.50, 0.56]
    j = N.judge(noisy, [0.52, 0.53, 0.47], 0.025)  # +6% with ~10% noise: the gate cannot tell
    assert j.verdict == N.INCONCLUSIVE and j.floor > 0.06 and j.detectable == j.floor
    assert N.judge(noisy, [0.50 * 1.8, 0.49 * 1.8, 0.52 * 1.8], 0.025).verdict == N.REGRESSION  # far past the floor
    # within the tolerance but on a floor above it: the asked tolerance cannot be judged ...
    assert N.judge(noisy, [0.50, 0.51, 0.48], 0.025).verdict == N.INCONCLUSIVE
    # ... unless even the floor added to the change stays within it (a clear speed-up)
    assert N.judge(noisy, [0.25, 0.26, 0.24], 0.025).verdict == N.PASS
    # a real change between the runs is not counted as noise: the spread is around each run's own median
    assert N.log_spread([1.0, 1.0], [2.0, 2.0]) == 0.0 and N.log_spread([1.0]) is None
    # more processes, a lower floor
    assert N.floor(0.05, 3, 8) < N.floor(0.05, 3, 3) < N.floor(0.05, 2, 2)


def test_undecided_asks_for_more_processes_only_while_the_noise_leaves_a_check_open():
    base = [
        {"fullname": "a/fp32 b1", "extra_info": {"process_ratios": [0.45, 0.50, 0.56]}},
        {"fullname": "a/fp32 memory", "extra_info": {"load_delta_rss_mb": 3.0}},
    ]
    assert GT.undecided({"a/fp32": {"1": [0.52, 0.53, 0.47]}}, base, 0.025)  # inconclusive
    assert not GT.undecided({"a/fp32": {"1": [0.25, 0.26, 0.24]}}, base, 0.025)  # a clear speed-up: a pass
    assert not GT.undecided({"b/fp32": {"1": [0.52, 0.53, 0.47]}}, base, 0.025)  # not in the baseline
    # saving a baseline: more while its own floor is above the tolerance
    assert GT.undecided({"a/fp32": {"1": [0.45, 0.50, 0.56]}}, None, 0.025)
    assert not GT.undecided({"a/fp32": {"1": [0.500, 0.501, 0.499]}}, None, 0.025)


def _doc(ratios: dict | None) -> dict:
    doc = {
        "paths": {
            "eager/fp32": {"backend": "eager", "load_delta_rss_mb": 10.0},
            "onnxruntime/fp32": {
                "backend": "onnxruntime",
                "load_delta_rss_mb": 20.0,
                "latency": {"1": {"min_ms": 1.0, "p50_ms": 1.0}},
            },
        }
    }
    if ratios is not None:
        doc["gate"] = {**GT.method(32, 2), "ratios": ratios}
    return doc


def _noisy_doc(per_process: dict) -> dict:
    doc = _doc({n: {bs: sorted(r)[len(r) // 2] for bs, r in by.items()} for n, by in per_process.items()})
    doc["gate"]["process_ratios"] = per_process
    return doc


def test_gate_with_process_ratios_says_inconclusive_with_what_it_could_detect():
    base = V.entries(_noisy_doc({"onnxruntime/fp32": {"1": [0.45, 0.50, 0.56], "8": [0.400, 0.401, 0.399]}}))
    b1 = next(e for e in base if e["fullname"] == "onnxruntime/fp32 b1")["extra_info"]
    assert b1["process_ratios"] == [0.45, 0.50, 0.56] and b1["ratio_to_ref"] == 0.50 and b1["noise"] > 0.05
    run = V.entries(_noisy_doc({"onnxruntime/fp32": {"1": [0.52, 0.53, 0.47], "8": [0.402, 0.401, 0.403]}}))
    res = gate(run, base, time_tolerance=0.025)
    assert not res.ok and not res.regressions and res.verdict == N.INCONCLUSIVE
    assert [f.name for f in res.inconclusive] == ["onnxruntime/fp32 b1"]
    verdicts = V.verdicts(res, run, base)
    assert verdicts["onnxruntime/fp32"] == N.INCONCLUSIVE
    text = "\n".join(V.lines(res, verdicts, {"name": "main"}, (0.025, 0.1, 24)))
    assert text.endswith("gate: INCONCLUSIVE (1 change(s) within the noise; exit 4)"), text
    assert (
        "b8: +0.5% (median of 3 processes vs 3); noise floor" in text
        and "smallest slowdown it could detect: 2.5%" in text
    )
    assert "--gate-budget" in text and "--batch-sizes" in text
    floor = next(f for f in res.inconclusive).floor  # the advised tolerance is at or above the floor
    assert float(text.split("--time-tolerance ")[1].split(")")[0]) >= floor
    md = V.markdown(res, verdicts, {"name": "main"}, {"model": "m"})
    assert "ipex-resnet gate: INCONCLUSIVE" in md and "**INCONCLUSIVE** (within the noise)" in md
    # a slowdown past the floor is a regression even on a noisy path; a regression outranks inconclusive
    slow = V.entries(_noisy_doc({"onnxruntime/fp32": {"1": [0.52, 0.53, 0.47], "8": [0.44, 0.441, 0.439]}}))
    res = gate(slow, base, time_tolerance=0.025)
    assert [f.name for f in res.regressions] == ["onnxruntime/fp32 b8"] and res.verdict == "FAIL"
    assert V.verdicts(res, slow, base)["onnxruntime/fp32"] == "REGRESSION"
    # saving: a baseline whose own floor is above the tolerance says so
    notes = V.baseline_noise(base, 0.025)
    assert len(notes) == 1 and "onnxruntime/fp32 b1: noise floor" in notes[0] and "inconclusive" in notes[0]


def test_entries_judge_the_gate_section_and_a_slower_path_fails():
    base = V.entries(_doc({"onnxruntime/fp32": {"1": 0.50, "8": 0.40}}))
    assert [b["fullname"] for b in base] == [
        "eager/fp32 memory",
        "onnxruntime/fp32 b1",
        "onnxruntime/fp32 b8",
        "onnxruntime/fp32 memory",
    ]
    same = gate(V.entries(_doc({"onnxruntime/fp32": {"1": 0.51, "8": 0.404}})), base, time_tolerance=0.025)
    assert same.ok and len([f for f in same.checked if f.metric == "ratio_to_ref"]) == 2
    slow = gate(V.entries(_doc({"onnxruntime/fp32": {"1": 0.525, "8": 0.40}})), base, time_tolerance=0.025)
    assert [f.name for f in slow.regressions] == ["onnxruntime/fp32 b1"]  # +5% at b1, past the 2.5% tolerance
    # a report measured without --gate/--save-baseline: no time entries (its latencies are not the gate's)
    assert all(e["fullname"].endswith("memory") for e in V.entries(_doc(None)))


def test_baseline_timed_another_way_is_refused_in_one_line(tmp_path):
    spec = B.model_spec(ModelSpec("mypkg.net:build"))
    doc = {"machine_key": "k1", "paths": {}}
    path = B.save(tmp_path, "main", doc, spec, [], GT.method(32, 2))
    assert B.load(path, "k1", spec, GT.method(16, 3))["name"] == "main"  # rounds, processes: only tighter or looser
    for theirs, words in (
        (None, "an older gate (ratio of minimums)"),
        ({"estimator": "paired", "threads": 1}, "the paired "),
        ({**GT.method(32, 2), "threads": 2}, "at 2 thread(s)"),
    ):
        saved = json.loads(path.read_text())
        if theirs is None:
            saved.pop("gate_method")
        else:
            saved["gate_method"] = theirs
        path.write_text(json.dumps(saved))
        with pytest.raises(ConfigError) as exc:
            B.load(path, "k1", spec, GT.method(32, 2))
        msg = str(exc.value)
        assert "\n" not in msg and words in msg and "save it again with --save-baseline" in msg, msg
