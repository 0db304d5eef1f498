"""Shared fixtures: real photos, a BatchNorm-calibrated ResNet-18, its checkpoint, and the FP32 eager
reference logits that every optimized path is compared against."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The shared real photos: ../shared beside the checkout, or where IPEX_RESNET_SAMPLES says (.ci/run sets it
# for a clone made elsewhere: the photos beside the checkout it was cloned from).
SAMPLES = Path(os.environ.get("IPEX_RESNET_SAMPLES") or REPO.parent / "shared" / "data" / "imagenet-samples")
FIXTURES = Path(__file__).parent / "fixtures"
AGREEMENT_IMAGES = 16

# CI sets this to the backends that must really run on its stack, so "skipped" cannot pass for "ran".
REQUIRED_BACKENDS = {b for b in os.environ.get("IPEX_RESNET_REQUIRE_BACKENDS", "").split(",") if b}

# The test session's own artifact cache (subprocesses inherit it; removed when the session ends: a
# session's compiled artifacts take about 1 GB), and the static backend rule unless a test asks for
# measurement: measuring every engine on each auto load would cost minutes.
if "IPEX_RESNET_CACHE_DIR" not in os.environ:
    os.environ["IPEX_RESNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="ipex_resnet_test_cache_")
    atexit.register(shutil.rmtree, os.environ["IPEX_RESNET_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("IPEX_RESNET_AUTO", "static")


# CI names the skips it expects on this stack and hardware (a file of regular expressions, one per
# line); any other skip fails the session, so a missing photo folder or library cannot pass as green.
EXPECTED_SKIPS_FILE = os.environ.get("IPEX_RESNET_EXPECTED_SKIPS")
_skips: list[tuple[str, str]] = []

# A module whose tests run the same on either torch stack declares ``pytestmark = pytest.mark.any_stack``:
# CI runs those on the latest stack only (``-m "not any_stack"`` on the IPEX stack, README).


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skips.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_sessionfinish(session, exitstatus):
    if not EXPECTED_SKIPS_FILE:
        return
    import re

    lines = Path(EXPECTED_SKIPS_FILE).read_text().splitlines()
    patterns = [re.compile(line) for line in lines if line.strip() and not line.startswith("#")]
    unexpected = [(n, r) for n, r in _skips if not any(p.search(r) for p in patterns)]
    if unexpected:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"\n{len(unexpected)} unexpected skip(s) (not in {EXPECTED_SKIPS_FILE}):", red=True)
            for nodeid, reason in unexpected:
                tr.write_line(f"  {nodeid}: {reason}", red=True)
        session.exitstatus = 1


def random_weights_gate(engine: str | None = None):
    """The INT8 agreement gate for the tests' seeded ResNet-18. Its weights are random (BN-calibrated):
    its top logits nearly tie, so correct INT8 agrees with FP32 on only 0.87-0.93 of the photos, where
    a model with real weights agrees on 0.985-1.0 (the default gate is set from those). ONNX Runtime's
    7-bit weights on a CPU without VNNI (``reduce_range``) cost a little more there: 0.78 measured
    with the hostile layer of test_int8_fallback kept in FP32 (EfficientNet-Lite1 with real weights: 0.0
    top-1 points lost)."""
    from ipex_resnet.quantization._common import reduced_range_here
    from ipex_resnet.quantization.accuracy import Gate

    if engine == "onnxruntime" and reduced_range_here():
        return Gate(min_top1=0.70, min_top5=0.80)
    return Gate(min_top1=0.80, min_top5=0.80)


def require_int8(engine: str) -> None:
    """Skip when ``engine``'s INT8 flow cannot run here (the CPU, or a missing package), or fail when CI
    requires that engine and only a package is missing."""
    from ipex_resnet import engines, probe
    from ipex_resnet.quantization import engine_module

    cpu = probe(check_torch=False)
    if "int8" not in engines.get(engine).precisions(cpu):
        pytest.skip(f"{engine} runs no int8 on this CPU ({cpu.isa_level}, no VNNI or AMX)")
    ok, why = engine_module(engine).status()
    if not ok:
        if engine in REQUIRED_BACKENDS:
            pytest.fail(f"INT8 on {engine} must run on this stack but cannot: {why}")
        pytest.skip(f"{engine} INT8 unavailable: {why}")


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
    (pkg / "__init__.py").write_text(
        "import sys\nprint('ERROR! needs PyTorch 2.7.*', file=sys.stderr)\nsys.exit(127)\n"
    )
    dist = where / "intel_extension_for_pytorch-2.7.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: intel_extension_for_pytorch\nVersion: 2.7.0\n")
    return {**os.environ, "PYTHONPATH": f"{where}{os.pathsep}{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def sample_photos() -> list[Path]:
    """The shared real photos listed in labels.csv, sorted by name; skips the calling test (or module,
    when called at import) when they are missing."""
    if not (SAMPLES / "labels.csv").is_file():
        pytest.skip(f"real photos not found at {SAMPLES}", allow_module_level=True)
    with open(SAMPLES / "labels.csv") as f:
        return sorted(SAMPLES / row["file"] for row in csv.DictReader(f))


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    """:func:`sample_photos` as a fixture."""
    return sample_photos()


@pytest.fixture(scope="session")
def calibrated_state_dict(photos) -> dict[str, torch.Tensor]:
    """ResNet-18 with seeded random weights whose BatchNorm statistics are calibrated on real photos
    (``calibrated``: without it logits are near-uniform and any two backends
    would "agree"), preprocessed by the exact preset."""
    from calibrated import bn_calibrated_resnet18
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms(), mode="exact")
    return bn_calibrated_resnet18(photos, pre).state_dict()


@pytest.fixture(scope="session")
def calibrated_resnet18(calibrated_state_dict) -> torch.nn.Module:
    """The BN-calibrated seeded ResNet-18 as a module (eval mode)."""
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    model.load_state_dict(calibrated_state_dict)
    return model.eval()


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
