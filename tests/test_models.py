"""Models by name, torchvision weights (offline error), local checkpoints, user modules."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
import torchvision

import ipex_resnet
from ipex_resnet.errors import ConfigError, WeightsError
from ipex_resnet.models.resolve import RANDOM_INIT_LABEL, cache_path, load_checkpoint, resolve


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'.*resnet18"):
        resolve("resnet19", "none")


@pytest.mark.parametrize("name", ["resnet34", "resnet50", "mobilenet_v3_small"])
def test_other_torchvision_classifiers_by_name(name):
    m = resolve(name, "none")
    assert m.name == name and m.random_init and len(m.categories) == 1000
    with torch.no_grad():
        assert m.module(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_weights_names_resolve_through_torchvision():
    from ipex_resnet.models.resolve import _weights_enum

    assert _weights_enum("resnet50", "DEFAULT") is torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    assert _weights_enum("resnet50", "IMAGENET1K_V1") is torchvision.models.ResNet50_Weights.IMAGENET1K_V1
    assert (
        _weights_enum("resnet18", "ResNet18_Weights.IMAGENET1K_V1") is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    )
    with pytest.raises(ConfigError, match="IMAGENET1K_V9.*IMAGENET1K_V1"):
        _weights_enum("resnet18", "IMAGENET1K_V9")
    with pytest.raises(ConfigError, match="not weights of resnet18"):
        _weights_enum("resnet18", "ResNet50_Weights.DEFAULT")


def test_offline_default_weights_name_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    # This machine has no route to download.pytorch.org: the real download fails, quickly, with a
    # message naming the file torchvision wants and the cache path to put it in.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    w = torchvision.models.ResNet18_Weights.DEFAULT
    try:
        resolve("resnet18", "DEFAULT")
    except WeightsError as exc:
        msg = str(exc)
    else:
        pytest.skip("network reachable: the real weights downloaded")
    assert "resnet18-f37072fd.pth" in msg and w.url in msg
    assert str(cache_path(w)) in msg and str(tmp_path) in msg
    assert "weights='none'" in msg and "\n" not in msg


def test_checkpoint_round_trip(tmp_path, calibrated_state_dict):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in calibrated_state_dict.items()}}, path)
    m = resolve("resnet18", str(path))
    assert m.weights == f"checkpoint {path}" and not m.random_init
    assert torch.equal(m.module.state_dict()["fc.weight"], calibrated_state_dict["fc.weight"])


def test_checkpoint_is_loaded_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(WeightsError, match="not a loadable weights-only state dict"):
        load_checkpoint(path)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        resolve("resnet18", str(tmp_path / "nope.pth"))
    wrong = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), wrong)
    with pytest.raises(WeightsError, match="does not fit ResNet"):
        resolve("resnet18", str(wrong))
    other = tmp_path / "ten.pth"
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), other)
    m = resolve("resnet18", str(other))
    assert m.categories == [f"class_{i}" for i in range(10)]


def test_random_init_is_labelled(checkpoint):
    clf = ipex_resnet.load("resnet18", weights="none", backend="eager")
    assert clf.random_init and clf.plan.weights == RANDOM_INIT_LABEL and "meaningless" in clf.plan.describe()


def test_user_module_drop_in(photos, checkpoint):
    """A user's own nn.Module goes through the same optimize path (here with IPEX or Inductor when
    available, else eager) and gives the same answers as the same weights by name."""
    model = torchvision.models.resnet18()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    mine = ipex_resnet.load(model, backend="eager")
    named = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager")
    assert mine.plan.model == "ResNet" and "user module" in mine.plan.weights
    assert mine.predict(photos[:3]) == named.predict(photos[:3])


def test_the_eager_path_starts_without_torchdynamo(tmp_path):
    """The eager path imports torchvision without TorchDynamo (torchvision's roi_align imports one of its
    functions at import time: 1.8 s of a 4.5 s cold start), and everything that needs TorchDynamo later
    still gets the real one: roi_align's own check, and torch.compile."""
    code = (
        "import sys, numpy as np, ipex_resnet\n"
        "clf = ipex_resnet.load('resnet18', weights='none', backend='eager', precision='fp32', threads=1)\n"
        "clf(np.zeros((1, 3, 224, 224), np.float32))\n"
        "print('dynamo after load:', 'torch._dynamo' in sys.modules)\n"
        "import torch, torchvision\n"
        "rois = torchvision.ops.roi_align(torch.rand(1, 3, 8, 8), torch.tensor([[0.0, 0, 0, 4, 4]]), output_size=2)\n"
        "print('roi_align:', tuple(rois.shape), sys.modules['torchvision.ops.roi_align'].is_compile_supported('cpu'))\n"
        "print('dynamo:', hasattr(sys.modules['torch._dynamo'], 'optimize'))\n"
        "print('compiled:', torch.compile(lambda a: a * 2, backend='eager')(torch.ones(2)).tolist())\n"
    )
    env = {**os.environ, "IPEX_RESNET_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines == [
        "dynamo after load: False",
        "roi_align: (1, 3, 2, 2) True",
        "dynamo: True",
        "compiled: [2.0, 2.0]",
    ], done.stdout
