"""The Python API: predict on mixed inputs, logits on tensors, top-k semantics."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import require_backend
from PIL import Image

import ipex_resnet


@pytest.fixture(scope="module")
def clf(checkpoint):
    return ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager")


def test_predict_mixed_inputs_and_sizes(clf, photos):
    with Image.open(photos[4]) as img:
        pil = img.copy()
    inputs = [
        str(photos[3]),
        pil,
        photos[5].read_bytes(),
        io.BytesIO(photos[6].read_bytes()),
        np.asarray(Image.open(photos[7]).convert("RGB")),
    ]
    results = clf.predict(inputs, topk=5)
    assert len(results) == 5
    one_by_one = [clf.predict([x], topk=5)[0] for x in [photos[3], photos[4], photos[5], photos[6], photos[7]]]
    assert [r[0]["index"] for r in results] == [r[0]["index"] for r in one_by_one]
    for r in results:
        assert [x["score"] for x in r] == sorted((x["score"] for x in r), reverse=True)
        assert all(x["label"] == clf.categories[x["index"]] for x in r)


def test_scores_are_softmax_probabilities(clf, agreement_batch):
    logits = clf(agreement_batch)
    full = clf.topk(logits, k=1000)
    assert abs(sum(x["score"] for x in full[0]) - 1.0) < 1e-4
    assert full[0][0]["score"] == pytest.approx(torch.softmax(logits[0], 0).max().item())


def test_single_image_and_batching_are_consistent(clf, photos):
    assert clf.predict(str(photos[0])) == clf.predict([str(photos[0])])
    many = clf.predict(photos[:7], batch_size=3)
    whole = clf.predict(photos[:7], batch_size=32)
    assert [[x["index"] for x in r] for r in many] == [[x["index"] for x in r] for r in whole]
    for a, b in zip(many, whole):  # batch shape changes the GEMM blocking, not the answer
        assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], rel=1e-4)


def test_bad_image_in_predict_names_it(clf, photos):
    with pytest.raises(ipex_resnet.ImageError, match=r"input 1 \(bytes\): not an image"):
        clf.predict([str(photos[0]), b"garbage"])


def test_logits_call_validates(clf):
    with pytest.raises(ipex_resnet.ConfigError, match="Nx3xHxW"):
        clf(torch.zeros(3, 224, 224))
    with pytest.raises(ipex_resnet.ConfigError, match="topk must be at least 1"):
        clf.predict([torch.zeros(3, 8, 8)], topk=0)


def test_plan_is_exposed(clf):
    assert clf.plan.backend == "eager" and clf.plan.model == "resnet18"
    assert set(clf.plan.reasons) == {"backend", "precision", "memory_format", "threads", "streams"}
    assert torch.get_num_threads() == clf.plan.threads


def test_optimize_free_function_on_a_user_module(checkpoint, agreement_batch, reference_logits):
    import torchvision

    require_backend("inductor")
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    runner, plan = ipex_resnet.optimize(model, backend="inductor", precision="fp32")
    assert plan.backend == "inductor" and plan.options["freezing"] is True
    out = runner(agreement_batch)
    assert float((out - reference_logits).norm() / reference_logits.norm()) < 1e-4
