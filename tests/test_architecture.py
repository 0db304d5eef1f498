"""The package's shape and the defects a full read found, each pinned by a test."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.any_stack

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    """Imports point down the layers and no package's modules import each other in a cycle
    (import-linter, configured in pyproject.toml)."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports (import-linter) is not installed: it is part of the test dependencies")
    done = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _package_attribute_chains(path: Path) -> set[str]:
    """Every dotted name ``ipex_resnet.a.b`` a script uses (attribute access on the package)."""
    chains = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            parts = []
            cur = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "ipex_resnet":
                chains.add(".".join(["ipex_resnet", *reversed(parts)]))
    return chains


def _resolves(chain: str) -> bool:
    parts = chain.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize(
    "script", sorted(p.relative_to(REPO).as_posix() for d in ("bench", "tools") for p in (REPO / d).glob("*.py"))
)
def test_scripts_use_only_names_the_package_has(script):
    """bench/ and tools/ scripts run rarely; a name they use that the package lost (as
    ``ipex_resnet.backends`` once was) must fail here, not in someone's benchmark run."""
    missing = sorted(c for c in _package_attribute_chains(REPO / script) if not _resolves(c))
    assert not missing, f"{script} uses {missing}"


def test_documented_errors_are_exported():
    import ipex_resnet
    from ipex_resnet.errors import AccuracyGateError, IpexResnetError

    assert ipex_resnet.AccuracyGateError is AccuracyGateError
    assert issubclass(AccuracyGateError, IpexResnetError)
    for name in ipex_resnet.__all__:
        assert hasattr(ipex_resnet, name), name


def test_calibration_folder_takes_only_what_the_decoder_accepts(tmp_path):
    """A folder of PPMs (a format the decoder refuses) is refused up front with the formats it
    takes, instead of failing mid-calibration on the first image."""
    from PIL import Image

    from ipex_resnet.errors import ConfigError
    from ipex_resnet.imaging import IMAGE_EXTENSIONS
    from ipex_resnet.quantization.calibration import collect

    for i in range(3):
        Image.new("RGB", (32, 32), (i, 0, 0)).save(tmp_path / f"{i}.ppm")
    with pytest.raises(ConfigError, match="has no image files"):
        collect(tmp_path)
    assert ".ppm" not in IMAGE_EXTENSIONS


def test_int8_readiness_asks_the_flows_own_libraries():
    """``int8_ready`` says ready exactly when the engine's INT8 flow can run (its status checks
    torchao, NNCF, ONNX Runtime or IPEX), not merely when our own module exists."""
    from ipex_resnet import engines
    from ipex_resnet.benchmarking.matrix import int8_ready
    from ipex_resnet.quantization import ENGINES, engine_module

    for name in ENGINES:
        ok, why = engine_module(name).status()
        assert (int8_ready(name) is None) == ok, (name, why, int8_ready(name))
    assert int8_ready("eager") is not None
    assert set(ENGINES) < set(engines.names())


USER_CODE = '''
"""A user's typed code against the public API."""
from pathlib import Path

import torch

import ipex_resnet
from ipex_resnet import Classifier, Plan


def classify(paths: list[Path]) -> list[str]:
    clf: Classifier = ipex_resnet.load("resnet18", weights="none", backend="eager", precision="fp32")
    plan: Plan = clf.plan
    print(plan.describe(), plan.threads, plan.backend, plan.to_dict())
    top = clf.predict([str(p) for p in paths], topk=5)
    return [t[0]["label"] for t in top]


def optimized(module: torch.nn.Module) -> Plan:
    runner, plan = ipex_resnet.optimize(module, backend="eager", precision="fp32")
    return plan


def plan_here() -> str:
    cpu = ipex_resnet.probe()
    return ipex_resnet.plan_for(cpu, backend="auto").describe() + cpu.isa_level


def errors() -> tuple[type[Exception], ...]:
    return (ipex_resnet.ConfigError, ipex_resnet.ImageError, ipex_resnet.AccuracyGateError)
'''


def _built_wheel(out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("ipex_resnet-*.whl")
    return wheel


def test_the_installed_package_is_typed_for_a_strict_user(tmp_path):
    """The wheel carries py.typed and the service's page; installed from it, a user who runs
    ``mypy --strict`` on code that calls load/optimize/probe/plan_for, Classifier and Plan gets no
    error: without py.typed mypy would not read the package's types, and an unannotated function is an
    "untyped call in a typed context"."""
    import zipfile

    mypy = shutil.which("mypy") or str(Path(sys.executable).with_name("mypy"))
    if not Path(mypy).exists():
        pytest.skip("mypy is installed on the latest stack only (.ci/requirements-latest.txt)")
    wheel = zipfile.ZipFile(_built_wheel(tmp_path / "dist"))
    assert {"ipex_resnet/py.typed", "ipex_resnet/static/index.html"} <= set(wheel.namelist())
    site = tmp_path / "site"
    wheel.extractall(site)  # installed as pip would (a plain folder on the path; mypy ignores editable finders)
    script = tmp_path / "user_code.py"
    script.write_text(USER_CODE)
    done = subprocess.run(
        [mypy, "--strict", "--follow-imports=silent", "--python-executable", sys.executable]
        + ["--cache-dir", str(tmp_path / "cache"), str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
