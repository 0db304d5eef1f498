"""The package gate's timing and its bookkeeping: the fastest calls of fresh processes pooled, the report's
``gate`` section as the gate's entries, and baselines timed another way refused.
(The whole path, on a user's model in subprocesses: test_gate_cli.py.)"""

from __future__ import annotations

import json

import pytest

from ipex_resnet.benchmarking import baseline as B
from ipex_resnet.benchmarking import gate_timing as GT
from ipex_resnet.benchmarking import verdict as V
from ipex_resnet.benchmarking.gate import gate
from ipex_resnet.errors import ConfigError


def test_gate_times_batch_one_and_the_smallest_batch_above_it():
    assert GT.batch_sizes([1, 8, 32]) == [1, 8]
    assert GT.batch_sizes([1]) == [1]
    assert GT.batch_sizes([1, 2]) == [1, 2]


def test_pooled_over_processes_fastest_over_fastest_of_what_every_process_measured():
    per = [{"a/fp32": {"1": [0.010, 0.041], "8": [0.08, 0.30]}, "b/fp32": {"1": [0.02, 0.04]}},
           {"a/fp32": {"1": [0.012, 0.040], "8": [0.09, 0.32]}},
           {"a/fp32": {"1": [0.011, 0.050], "8": [0.07, 0.31]}, "b/fp32": {"1": [0.03, 0.04]}}]
    assert GT.pooled_ratios(per) == {"a/fp32": {"1": 0.010 / 0.040, "8": 0.07 / 0.30}}
    # one process placed badly (every call 20% slower) does not move the pooled ratio
    slow = [{"a/fp32": {"1": [c * 1.2, r * 1.2]}} for c, r in ([0.010, 0.040],)]
    assert GT.pooled_ratios([per[0], slow[0]])["a/fp32"]["1"] == 0.010 / 0.041


def _doc(ratios: dict | None) -> dict:
    doc = {"paths": {"eager/fp32": {"backend": "eager", "load_delta_rss_mb": 10.0},
                     "onnxruntime/fp32": {"backend": "onnxruntime", "load_delta_rss_mb": 20.0,
                                          "latency": {"1": {"min_ms": 1.0, "p50_ms": 1.0}}}}}
    if ratios is not None:
        doc["gate"] = {**GT.method(32, 2), "ratios": ratios}
    return doc


def test_entries_judge_the_gate_section_and_a_slower_path_fails():
    base = V.entries(_doc({"onnxruntime/fp32": {"1": 0.50, "8": 0.40}}))
    assert [b["fullname"] for b in base] == ["eager/fp32 memory", "onnxruntime/fp32 b1", "onnxruntime/fp32 b8",
                                             "onnxruntime/fp32 memory"]
    same = gate(V.entries(_doc({"onnxruntime/fp32": {"1": 0.51, "8": 0.404}})), base, time_tolerance=0.025)
    assert same.ok and len([f for f in same.checked if f.metric == "ratio_to_ref"]) == 2
    slow = gate(V.entries(_doc({"onnxruntime/fp32": {"1": 0.525, "8": 0.40}})), base, time_tolerance=0.025)
    assert [f.name for f in slow.regressions] == ["onnxruntime/fp32 b1"]  # +5% at b1, past the 2.5% tolerance
    # a report measured without --gate/--save-baseline: no time entries (its latencies are not the gate's)
    assert all(e["fullname"].endswith("memory") for e in V.entries(_doc(None)))


def test_baseline_timed_another_way_is_refused_in_one_line(tmp_path):
    spec = B.model_spec("mypkg.net:build", None, None)
    doc = {"machine_key": "k1", "paths": {}}
    path = B.save(tmp_path, "main", doc, spec, [], GT.method(32, 2))
    assert B.load(path, "k1", spec, GT.method(16, 3))["name"] == "main"  # rounds, processes: only tighter or looser
    for theirs, words in ((None, "an older gate (ratio of minimums)"), ({"estimator": "paired", "threads": 1}, "the paired "),
                          ({**GT.method(32, 2), "threads": 2}, "at 2 thread(s)")):
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
