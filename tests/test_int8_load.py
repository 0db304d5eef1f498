"""INT8 through the public API and the CLI: load(precision="int8", calibration=...) quantizes with
the engine's flow, records the held-out agreement in the artifact, gates on it, and reuses the
quantized artifact without the calibration images; policy and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import FIXTURES, REPO, random_weights_gate, require_backend

import ipex_resnet
from ipex_resnet.quantization.accuracy import AccuracyGateError

CALIBRATION = 40  # 30 calibrate, 10 held out: CI-sized (the flows' own tests use more)


@pytest.fixture(scope="module")
def calib_dir(photos, tmp_path_factory):
    """A calibration folder of links to half of the real photos (never copies)."""
    d = tmp_path_factory.mktemp("calib")
    for p in photos[::2][:CALIBRATION]:
        (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="module")
def int8_ort(checkpoint, calib_dir):
    require_backend("onnxruntime")
    return ipex_resnet.load(
        "resnet18",
        weights=str(checkpoint),
        backend="onnxruntime",
        precision="int8",
        calibration=str(calib_dir),
        accuracy_gate=random_weights_gate(),
    )


@pytest.mark.slow
def test_int8_load_quantizes_reports_and_agrees(int8_ort, agreement_batch, reference_logits):
    clf = int8_ort
    assert (clf.plan.backend, clf.plan.precision) == ("onnxruntime", "int8")
    acc = clf.artifact["accuracy"]
    assert acc["images"] == 10 and 0.8 <= acc["top1"] <= 1.0 and 0.8 <= acc["top5"] <= 1.0
    assert "calibrated on 30 images" in clf.plan.reasons["precision"]
    assert "top-1 agreement with fp32" in clf.plan.describe()
    out = clf(agreement_batch)
    ref = reference_logits
    top5 = np.mean(
        [len(set(np.argsort(-a)[:5]) & set(np.argsort(-r)[:5].tolist())) / 5 for a, r in zip(out.numpy(), ref.numpy())]
    )
    assert top5 >= 0.8


@pytest.mark.slow
def test_int8_artifact_is_reused_without_the_calibration_images(int8_ort, checkpoint):
    again = ipex_resnet.load(
        "resnet18",
        weights=str(checkpoint),
        backend="onnxruntime",
        precision="int8",
        accuracy_gate=random_weights_gate(),
    )
    assert again.artifact["hit"] is True and again.artifact["entry"] == int8_ort.artifact["entry"]


def test_int8_without_calibration_is_a_clear_error(tmp_path, monkeypatch):
    require_backend("onnxruntime")
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(tmp_path))
    with pytest.raises(ipex_resnet.ConfigError, match="int8 needs calibration images"):
        ipex_resnet.load("resnet18", weights="none", backend="onnxruntime", precision="int8")
    with pytest.raises(ipex_resnet.ConfigError, match="does not exist"):
        ipex_resnet.load(
            "resnet18", weights="none", backend="onnxruntime", precision="int8", calibration=str(tmp_path / "missing")
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ipex_resnet.ConfigError, match="calibration"):
        ipex_resnet.load(
            "resnet18", weights="none", backend="onnxruntime", precision="int8", calibration=str(tmp_path / "empty")
        )


def test_eager_has_no_int8():
    with pytest.raises(ipex_resnet.BackendUnavailable, match="eager cannot run int8"):
        ipex_resnet.plan_for(backend="eager", precision="int8")


def test_int8_on_a_cpu_without_vnni_warns_what_it_lacks():
    from ipex_resnet import engines
    from ipex_resnet.core.policy import make_plan
    from ipex_resnet.hardware.cpu import parse_cpuinfo

    zen3 = parse_cpuinfo((FIXTURES / "cpus" / "zen3_milan.cpuinfo").read_text())
    plan = make_plan(zen3, "onnxruntime", "int8", 2, availability=engines.availability(), env={})
    assert plan.precision == "int8" and any("no VNNI" in w for w in plan.warnings)
    auto = make_plan(zen3, "onnxruntime", "auto", 2, availability=engines.availability(), env={})
    assert auto.precision == "fp32"  # auto never picks int8


@pytest.mark.slow
def test_gate_refuses_a_bad_quantization_unless_accepted(checkpoint, photos, tmp_path, monkeypatch):
    """Calibrated on constant images, the activations' ranges are wrong: judged on real held-out
    photos, load() refuses, naming the numbers; accept_accuracy=True loads it anyway."""
    from ipex_resnet.quantization.calibration import split

    require_backend("onnxruntime")
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(tmp_path))
    constant = [np.full((256, 256, 3), 100 + i, dtype=np.uint8) for i in range(16)]
    calibrated_at, held_at = split(list(range(16)))  # positions the split calibrates on / holds out
    for n, i in enumerate(held_at):
        constant[i] = str(photos[1 + 2 * n])  # held out: real photos (never calibrated on)
    assert len(held_at) == 4 and not set(held_at) & set(calibrated_at)
    # the held-out positions of the list actually passed are the real photos, the rest constant images
    calib_items, held_items = split(constant)
    assert all(isinstance(x, str) for x in held_items) and all(isinstance(x, np.ndarray) for x in calib_items)
    with pytest.raises(AccuracyGateError, match=r"top-1 agreement \d+\.\d%.*gate 80%"):
        ipex_resnet.load(
            "resnet18",
            weights=str(checkpoint),
            backend="onnxruntime",
            precision="int8",
            calibration=constant,
            accuracy_gate=random_weights_gate(),
        )
    clf = ipex_resnet.load(
        "resnet18",
        weights=str(checkpoint),
        backend="onnxruntime",
        precision="int8",
        calibration=constant,
        accept_accuracy=True,
    )
    assert clf.artifact["hit"] is True and clf.artifact["accuracy"]["top1"] < 0.8


@pytest.mark.slow
def test_cli_quantize_then_classify_int8(checkpoint, calib_dir, photos):
    require_backend("onnxruntime")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "ipex_resnet", *args], capture_output=True, text=True, timeout=600, env=env
        )

    # --accept-accuracy: the random-weights test model agrees with FP32 below the real-weights gate
    q = cli(
        "quantize",
        "--weights",
        str(checkpoint),
        "--backend",
        "onnxruntime",
        "--calibration",
        str(calib_dir),
        "--json",
        "--accept-accuracy",
    )
    assert q.returncode == 0, q.stderr[-2000:]
    doc = json.loads(q.stdout)
    assert doc["backend"] == "onnxruntime" and doc["accuracy"]["top1"] >= 0.8
    c = cli(
        "classify",
        str(photos[1]),
        "--weights",
        str(checkpoint),
        "--backend",
        "onnxruntime",
        "--precision",
        "int8",
        "--json",
        "--accept-accuracy",
    )
    assert c.returncode == 0, c.stderr[-2000:]
    out = json.loads(c.stdout)
    assert out["precision"] == "int8" and len(out["results"][0]["top"]) == 5
    missing = cli("quantize", "--weights", "none", "--backend", "onnxruntime")
    assert missing.returncode == 2 and "--calibration" in missing.stderr
