"""Native PyTorch: AOTInductor. ``torch.export`` -> freezing (oneDNN convolutions with fused post-ops)
-> one C++ package (``model.pt2``) with no Python between kernels.

The package holds two models: ``model`` (any batch size) and ``batch1`` (a batch of one, the latency
case). With a dynamic batch, AOTInductor keeps the convolution weights in plain NHWC order and oneDNN
reorders all 20 of them into its blocked layout at every call (a large share of a batch-1 call,
see ONEDNN_VERBOSE and docs/engines.md); with a static shape the weights are prepacked once at
compile time and those reorders are gone. At batch 32 the reorders are a negligible part of a call,
so one dynamic model covers the rest.

BF16 runs with BF16 weights and activations inside the package (the input is cast in the graph);
exporting under autocast instead leaves the convolutions unfused (many times slower). Loading a
package takes milliseconds, so a cached one starts in the time it takes to import torch.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ipex_resnet.engines import register
from ipex_resnet.engines.base import Engine, torch_runner
from ipex_resnet.export.aoti import BATCH1, DYNAMIC, compile_package, load_package
from ipex_resnet.util.deps import dist_version, installed

ARTIFACT = "model.pt2"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")


def wrap(module, *, bf16: bool):
    """The module in channels-last, BF16 weights and an in-graph input cast when ``bf16``."""
    import copy

    import torch

    class Cast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.to(torch.bfloat16)).float()

    model = module.eval().to(memory_format=torch.channels_last)
    return Cast(copy.deepcopy(model).to(torch.bfloat16)).eval() if bf16 else model


@register
class InductorEngine(Engine):
    name = "inductor"

    def status(self) -> tuple[bool, str]:
        version = dist_version("torch")
        if not installed("torch") or version is None:
            return False, "torch is not installed; pip install torch torchvision"
        if _compiler() is None:
            return (
                False,
                "Inductor needs a C++ compiler (g++ or clang++) on PATH; install one, e.g. apt-get install g++",
            )
        return True, f"native PyTorch {version.split('+')[0]}: AOTInductor with freezing"

    def precisions(self, cpu) -> tuple[str, ...]:
        return ("fp32", "bf16", "int8")

    def plan_options(self, precision, native_bf16):
        return {"freezing": True, "package": "AOTInductor"}, []

    def describe(self) -> str:
        return "torch.export + AOTInductor (freezing, oneDNN fused convolutions, C++ wrapper)"

    def build(self, module, plan, example, out_dir) -> dict:
        out = Path(out_dir) / ARTIFACT
        compile_package(wrap(module, bf16=plan.precision == "bf16"), example, out)
        return {"artifact": ARTIFACT, "models": [DYNAMIC, BATCH1]}

    def load(self, out_dir, plan):
        import torch

        path = Path(out_dir) / ARTIFACT
        any_batch = load_package(path, DYNAMIC)
        try:
            batch1 = load_package(path, BATCH1)
        except RuntimeError:  # a package with the dynamic model only (e.g. an INT8 flow's)
            batch1 = any_batch

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous(memory_format=torch.channels_last)
            return (batch1 if x.shape[0] == 1 else any_batch)(x).float()

        return torch_runner(run)
