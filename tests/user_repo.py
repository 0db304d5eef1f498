"""A user's own checkout for the command-line tests: ``mypkg.net:build`` (a 10-class CNN) in a temporary
package, a preset, and the environment a shell in it has (the installed console script on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, require_backend

BIN = Path(sys.executable).parent
SMALL = (
    "--quick --backends eager,onnxruntime --precisions fp32 --peers none --batch-sizes 2 --budget 0.5 "
    "--alone-budget 0.3 --no-cold-start --threads 1"
)
# Explicit: a tiny CNN (well under a millisecond a call) on a shared 2-core machine is noisier than
# the 2% default; the injected slowdown is 50%, far beyond it.
TOLERANCE = "--time-tolerance 0.2"
PRESET = {"resize_size": 80, "crop_size": 64, "mean": 0.5, "std": 0.25}


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory):
    """A user's checkout: ``mypkg.net:build`` (a 10-class CNN), a preset, and the shell's environment."""
    require_backend("onnxruntime")
    root = tmp_path_factory.mktemp("userrepo")
    (root / "mypkg").mkdir()
    (root / "mypkg" / "__init__.py").write_text("")
    shutil.copy(FIXTURES / "usermodels" / "tiny.py", root / "mypkg" / "net.py")
    (root / "preset.json").write_text(json.dumps(PRESET))
    env = {k: v for k, v in os.environ.items() if k != "IPEX_RESNET_BENCH_SLOWDOWN"}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH")))),
        IPEX_RESNET_CACHE_DIR=str(root / "cache"),
        GITHUB_STEP_SUMMARY=str(root / "summary.md"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BENCH_ARGS=f"--model mypkg.net:build --preset preset.json {SMALL} {TOLERANCE} --no-progress",
    )
    return root, env


def sh(user_repo, command: str, **env) -> subprocess.CompletedProcess:
    root, base = user_repo
    return subprocess.run(
        ["bash", "-c", command], cwd=root, env={**base, **env}, capture_output=True, text=True, timeout=600
    )
