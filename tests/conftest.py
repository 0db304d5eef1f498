"""Shared fixtures: real photos, a BatchNorm-calibrated ResNet-18, its checkpoint, and the FP32 eager
reference logits that every optimized path is compared against."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "imagenet-samples"
FIXTURES = Path(__file__).parent / "fixtures"
AGREEMENT_IMAGES = 16

# CI sets this to the backends that must really run on its stack, so "skipped" cannot pass for "ran".
REQUIRED_BACKENDS = {b for b in os.environ.get("IPEX_RESNET_REQUIRE_BACKENDS", "").split(",") if b}

# The test session's own artifact cache (subprocesses inherit it), and the static backend rule unless
# a test asks for measurement: measuring every engine on each auto load would cost minutes.
os.environ.setdefault("IPEX_RESNET_CACHE_DIR", tempfile.mkdtemp(prefix="ipex_resnet_test_cache_"))
os.environ.setdefault("IPEX_RESNET_AUTO", "static")


def require_backend(name: str) -> None:
    from ipex_resnet import engines

    ok, why = engines.get(name).status()
    if not ok:
        if name in REQUIRED_BACKENDS:
            pytest.fail(f"backend {name} must run on this stack but cannot: {why}")
        pytest.skip(f"{name} unavailable: {why}")


def mismatched_ipex_env(where: Path) -> dict[str, str]:
    """An environment with an IPEX 2.7.0 first on the path whose import exits the process, as a real
    IPEX built for another torch does."""
    pkg = where / "intel_extension_for_pytorch"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import sys\nprint('ERROR! needs PyTorch 2.7.*', file=sys.stderr)\nsys.exit(127)\n")
    dist = where / "intel_extension_for_pytorch-2.7.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: intel_extension_for_pytorch\nVersion: 2.7.0\n")
    return {**os.environ, "PYTHONPATH": f"{where}{os.pathsep}{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def sample_photos() -> list[Path]:
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip(f"real photos not found at {SAMPLES}")
    with open(SAMPLES / "labels.csv") as f:
        return [SAMPLES / row["file"] for row in csv.DictReader(f)]


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    return sample_photos()


@pytest.fixture(scope="session")
def calibrated_state_dict(photos) -> dict[str, torch.Tensor]:
    """ResNet-18 with seeded random weights whose BatchNorm statistics are calibrated on real photos
    (``ipex_resnet.benchmarking.calibrated``: without it logits are near-uniform and any two backends
    would "agree"), preprocessed by the exact preset."""
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.benchmarking.calibrated import bn_calibrated_resnet18
    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms(), mode="exact")
    return bn_calibrated_resnet18(photos, pre).state_dict()


@pytest.fixture(scope="session")
def checkpoint(calibrated_state_dict, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-calibrated.pth"
    torch.save(calibrated_state_dict, path)
    return path


@pytest.fixture(scope="session")
def agreement_batch(photos) -> torch.Tensor:
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms(), mode="exact")
    step = max(1, len(photos) // AGREEMENT_IMAGES)
    return torch.stack([torch.from_numpy(pre(p)) for p in photos[1::step][:AGREEMENT_IMAGES]])


@pytest.fixture(scope="session")
def reference_logits(checkpoint, agreement_batch) -> torch.Tensor:
    """FP32 eager logits: the reference every optimized path must match."""
    import ipex_resnet

    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager", precision="fp32")
    return clf(agreement_batch)
