"""A user's own nn.Module through load() with the default artifact cache: the key hashes every
tensor of its state dict (0-dim, integer and bool buffers included), and a second load is a hit."""

from __future__ import annotations

import pytest
import torch
from conftest import require_backend

from ipex_resnet.core.keys import weights_id


class WithOddBuffers(torch.nn.Module):
    """BatchNorm (a 0-dim int64 ``num_batches_tracked``), a bool mask and a bfloat16 buffer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.bn = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 10)
        self.register_buffer("mask", torch.ones(8, dtype=torch.bool))
        self.register_buffer("scale", torch.ones((), dtype=torch.bfloat16))

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = x * self.mask.to(x.dtype)[None, :, None, None] * self.scale.float()
        return self.head(x.mean((2, 3)))


def test_the_key_covers_every_buffer_whatever_its_dtype_or_shape():
    torch.manual_seed(0)
    model = WithOddBuffers().eval()
    base = weights_id(model, None)
    assert base.startswith("module:") and base == weights_id(model, None)
    model.bn.num_batches_tracked += 1  # 0-dim int64
    after_count = weights_id(model, None)
    model.mask[3] = False  # bool
    after_mask = weights_id(model, None)
    model.scale.fill_(2.0)  # 0-dim bfloat16
    after_scale = weights_id(model, None)
    assert len({base, after_count, after_mask, after_scale}) == 4


def test_same_bytes_in_another_dtype_or_shape_are_other_weights():
    a, b = torch.nn.Module(), torch.nn.Module()
    a.register_buffer("w", torch.zeros(4, dtype=torch.int32))
    b.register_buffer("w", torch.zeros(2, 2, dtype=torch.int32))
    c = torch.nn.Module()
    c.register_buffer("w", torch.zeros(4, dtype=torch.float32))
    assert len({weights_id(a, None), weights_id(b, None), weights_id(c, None)}) == 3


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_torchvision_module_loads_through_the_default_cache(backend, photos):
    """``load(torchvision.models.resnet18())``: the README's "your own nn.Module", default options."""
    import torchvision

    import ipex_resnet

    require_backend(backend)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    first = ipex_resnet.load(model, backend=backend, precision="fp32")
    again = ipex_resnet.load(model, backend=backend, precision="fp32")
    assert first.artifact is not None and again.artifact is not None
    assert (first.artifact["hit"], again.artifact["hit"]) == (False, True)
    assert len(first.predict([photos[0]], topk=3)[0]) == 3
    with torch.no_grad():
        model.bn1.running_mean.add_(0.5)  # one buffer value changes: another artifact
    other = ipex_resnet.load(model, backend=backend, precision="fp32")
    assert other.artifact["hit"] is False and other.artifact["entry"] != first.artifact["entry"]


@pytest.mark.slow
def test_int8_on_a_user_module_with_the_default_cache(photos):
    import torchvision

    import ipex_resnet

    require_backend("onnxruntime")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    clf = ipex_resnet.load(
        model, backend="onnxruntime", precision="int8", calibration=[str(p) for p in photos[:12]], accept_accuracy=True
    )  # random weights: agreement is not what this test is about
    assert clf.plan.precision == "int8" and clf.artifact["hit"] is False
    assert "calibrated on" in clf.plan.reasons["precision"]
    again = ipex_resnet.load(model, backend="onnxruntime", precision="int8", accept_accuracy=True)
    assert again.artifact["hit"] is True  # found again without the calibration images
