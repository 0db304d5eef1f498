"""Accuracy-aware INT8 through load(): when plain INT8 misses the gate, the layers most sensitive to
quantization are kept out of INT8 until it holds, and the artifact and the plan say which; and
``auto`` within an accuracy budget may pick INT8, listing speed and accuracy for every candidate."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import require_backend

from ipex_resnet.core import int8_search
from ipex_resnet.quantization.accuracy import Gate

pytestmark = pytest.mark.slow
HOSTILE = "layer2.0.conv2"


def hostile_resnet18(state_dict) -> torch.nn.Module:
    """The BN-calibrated test ResNet-18 with one activation made hostile to per-tensor INT8: channel 0
    of ``layer2.0``'s first BN+ReLU output is scaled by 1000 and ``layer2.0.conv2``'s weights for it by
    1/1000. FP32 computes the same function; INT8's per-tensor activation scale is ruined for that
    conv's input (the outlier channel takes the whole range)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.load_state_dict(state_dict)
    block = model.layer2[0]
    with torch.no_grad():
        block.bn1.weight[0] *= 1000
        block.bn1.bias[0] *= 1000
        block.conv2.weight[:, 0] /= 1000
    return model.eval()


def test_the_search_keeps_the_hostile_layer_out_and_says_so(
    calibrated_state_dict, photos, agreement_batch, reference_logits, tmp_path, monkeypatch
):
    import ipex_resnet

    require_backend("onnxruntime")
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(tmp_path / "cache"))
    model = hostile_resnet18(calibrated_state_dict)
    with torch.no_grad():
        assert torch.allclose(model(agreement_batch), reference_logits, rtol=1e-3, atol=1e-3)  # same function
    calibration = [str(p) for p in photos[:48]]
    gate = Gate(min_top1=0.9, min_top5=0.85)
    clf = ipex_resnet.load(model, backend="onnxruntime", precision="int8", calibration=calibration, accuracy_gate=gate)
    info = clf.artifact["info"]
    assert HOSTILE in info["kept_float"], info
    steps = info["search"]
    assert steps[0]["kept_float"] == [] and steps[0]["top1_agreement"] < gate.min_top1  # plain INT8 failed
    assert steps[-1]["top1_agreement"] >= gate.min_top1 and clf.artifact["accuracy"]["top1"] >= gate.min_top1
    assert HOSTILE in clf.plan.reasons["precision"] and "kept out of INT8" in clf.plan.describe()
    assert len(info["kept_float"]) <= 4  # a few layers, not the model
    again = ipex_resnet.load(model, backend="onnxruntime", precision="int8", accuracy_gate=gate)
    assert again.artifact["hit"] and again.artifact["info"]["kept_float"] == info["kept_float"]


def test_a_labelled_gate_refuses_with_the_points_lost(calibrated_state_dict, photos, tmp_path, monkeypatch):
    """Labels that the FP32 model gets right and an INT8 calibrated on constant images does not: the
    gate is a top-1 drop in points, and the refusal names it."""
    from torchvision.models import resnet18

    import ipex_resnet
    from ipex_resnet.errors import AccuracyGateError

    require_backend("onnxruntime")
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(tmp_path / "cache"))
    model = resnet18(weights=None)
    model.load_state_dict(calibrated_state_dict)
    model.eval()
    fp32 = ipex_resnet.load(model, backend="eager", precision="fp32")
    chosen = photos[100:140]
    labels = fp32.predict([str(p) for p in chosen], topk=1)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        w.writerows([str(p), r[0]["index"]] for p, r in zip(chosen, labels))
    constant = [np.full((256, 256, 3), 90 + i, dtype=np.uint8) for i in range(24)]
    with pytest.raises(AccuracyGateError, match=r"loses \d+\.\d top-1 points against fp32 \(gate 1\.0\)"):
        ipex_resnet.load(model, backend="onnxruntime", precision="int8", calibration=constant, labels=str(tmp_path))


def test_auto_within_a_budget_considers_int8(checkpoint, photos, monkeypatch):
    """The session's cache already holds the FP32/BF16 artifacts of this checkpoint (test_engines,
    test_autoselect): only the INT8 candidates are built here. Budget 100 points: every candidate is
    allowed, so the fastest must win, whatever its precision."""
    import ipex_resnet

    monkeypatch.setenv("IPEX_RESNET_AUTO", "measure")
    model, calibration = "resnet18", [str(p) for p in photos[:40]]
    clf = ipex_resnet.load(model, weights=str(checkpoint), calibration=calibration, accuracy_budget=100.0)
    rows = clf.plan.measured["engines"]
    int8_rows = {n: r for n, r in rows.items() if n.endswith("/int8")}
    assert int8_rows and all("drop_pts" in r for r in int8_rows.values() if "b1_ms" in r), rows
    assert all("drop_pts" in r for r in rows.values() if "b1_ms" in r)  # every candidate judged alike
    best = min((r["b1_ms"], n) for n, r in rows.items() if r.get("agrees"))[1]
    assert f"{clf.plan.backend}/{clf.plan.precision}" == (best if "/" in best else f"{best}/{rows[best]['precision']}")
    assert "within 100 point(s)" in clf.plan.reasons["backend"]
    # the precision was measured, not asked for: the plan says so
    assert clf.plan.reasons["precision"].startswith("auto, measured within the accuracy budget"), clf.plan.reasons
    # no budget: auto never picks int8, and no int8 candidate is built
    plain = ipex_resnet.load(model, weights=str(checkpoint))
    assert plain.plan.precision != "int8"
    assert not any(n.endswith("/int8") for n in plain.plan.measured["engines"])


def test_the_gate_follows_the_evidence():
    assert int8_search.gate_for(None, labelled=True) == int8_search.DropGate(1.0)
    assert int8_search.gate_for(0.5, labelled=True) == int8_search.DropGate(0.5)
    assert isinstance(int8_search.gate_for(None, labelled=False), Gate)
    assert int8_search.gate_for(2.0, labelled=False) == Gate(min_top1=0.98, min_top5=0.0)  # disagreement points
