"""``backend="auto"`` by measurement: every engine that runs is built, checked against eager FP32 and
timed; the fastest wins, the decision is cached and reused, explained in the plan, and overridable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ipex_resnet
from ipex_resnet import engines


@pytest.fixture(scope="module")
def measured(checkpoint):
    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), measure=True)
    again = ipex_resnet.load("resnet18", weights=str(checkpoint), measure=True)
    return clf, again


@pytest.mark.slow
def test_measures_every_engine_that_runs_and_picks_the_fastest(measured):
    clf, _ = measured
    plan = clf.plan
    rows = plan.measured["engines"]
    runnable = {n for n, (ok, _) in engines.availability().items() if ok}
    assert set(rows) == runnable
    timed = {n: r for n, r in rows.items() if r.get("agrees")}
    assert plan.backend in timed and "eager" in timed
    assert timed[plan.backend]["b1_ms"] == min(r["b1_ms"] for r in timed.values())
    assert plan.reasons["backend"].startswith("auto, measured")
    assert f"{plan.backend}/{plan.precision}" in plan.reasons["backend"]
    assert "measured:" in plan.describe()
    decision = Path(plan.measured["file"])
    assert decision.is_file() and json.loads(decision.read_text())["backend"] == plan.backend


@pytest.mark.slow
def test_the_decision_is_cached_and_reused(measured):
    first, again = measured
    assert again.plan.backend == first.plan.backend
    assert again.plan.measured["cached"] is True and "(cached decision)" in again.plan.reasons["backend"]
    assert again.plan.measured["engines"] == first.plan.measured["engines"]  # not measured a second time
    assert again.artifact is not None and again.artifact["hit"] is True  # and the artifact was reused


@pytest.mark.slow
def test_explicit_and_env_override_the_measurement(checkpoint, measured, monkeypatch):
    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager")
    assert clf.plan.reasons["backend"] == "requested (argument)" and not clf.plan.measured
    monkeypatch.setenv("IPEX_RESNET_BACKEND", "onnxruntime")
    clf = ipex_resnet.load("resnet18", weights=str(checkpoint))
    assert clf.plan.backend == "onnxruntime" and "env IPEX_RESNET_BACKEND" in clf.plan.reasons["backend"]


def test_static_rule_when_measuring_is_off(monkeypatch):
    from ipex_resnet.core.autoselect import wanted

    monkeypatch.delenv("IPEX_RESNET_BACKEND", raising=False)
    monkeypatch.setenv("IPEX_RESNET_AUTO", "static")
    assert wanted("auto", None) is False
    monkeypatch.setenv("IPEX_RESNET_AUTO", "measure")
    assert wanted("auto", None) is True and wanted("eager", None) is False and wanted("auto", False) is False
    monkeypatch.setenv("IPEX_RESNET_BACKEND", "eager")
    assert wanted("auto", None) is False
    plan = ipex_resnet.plan_for()
    assert plan.reasons["backend"].startswith("requested (env")
    monkeypatch.delenv("IPEX_RESNET_BACKEND")
    assert "static rule" in ipex_resnet.plan_for().reasons["backend"]


def test_a_tampered_decision_is_not_trusted(tmp_path, monkeypatch):
    from ipex_resnet.core import autoselect

    key = {"k": 1}
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"key": key, "backend": "os.system"}))
    assert autoselect._read(path, key) is None  # not an engine name
    path.write_text(json.dumps({"key": {"k": 2}, "backend": "eager"}))
    assert autoselect._read(path, key) is None  # another machine's or model's decision
    path.write_text(json.dumps({"key": key, "backend": "eager", "engines": {}, "why": "no engine could be measured"}))
    assert autoselect._read(path, key) is None  # a failed measurement (no "when"): not a decision
    path.write_text(json.dumps({"key": key, "backend": "eager", "engines": {}, "when": "2026-12-07 15:00"}))
    assert autoselect._read(path, key)["backend"] == "eager"
