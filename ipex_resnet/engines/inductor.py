"""Native PyTorch: AOTInductor. ``torch.export`` -> freezing (oneDNN convolutions with fused post-ops)
-> one C++ package (``model.pt2``) with no Python between kernels.

The package holds two models: ``model`` (any batch size) and ``batch1`` (a batch of one, the latency
case). With a dynamic batch, AOTInductor keeps the convolution weights in plain NHWC order and oneDNN
reorders all 20 of them into its blocked layout at every call (ONEDNN_VERBOSE: 1.6 of 5.2 ms per
ResNet-18 BF16 call here); with a static shape the weights are prepacked once at compile time and
those reorders are gone (batch 1: 5.8 -> 4.1 ms, quiet 2-core Zen box). At batch 32 the reorders are
~1% of a call, so one dynamic model covers the rest.

BF16 runs with BF16 weights and activations inside the package (the input is cast in the graph);
exporting under autocast instead leaves the convolutions unfused (~240 ms per call). Loading a
package takes milliseconds, so a cached one starts in the time it takes to import torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from . import register
from ..quantization import quantize
from .base import Engine, dist_version, have, torch_runner

ARTIFACT = "model.pt2"
MAX_BATCH = 1024
WARMUP_ITERS = 2


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")


@contextlib.contextmanager
def quiet_cpp_builder():
    """torch's C++ builder logs "No CUDA runtime is found" on CUDA wheels: not news on a CPU box."""
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


DYNAMIC = "model"   # any batch size (the package's default model)
BATCH1 = "batch1"   # specialized for a batch of one: prepacked weights


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


def compile_package(model, example, path: Path) -> Path:
    """An AOTInductor package at ``path`` with :data:`DYNAMIC` and :data:`BATCH1` models (freezing on),
    in the package format's multi-model layout (``torch._inductor.package.package_aoti``)."""
    import torch
    from torch._inductor.package import package_aoti

    x = torch.as_tensor(example).float()
    # A batch of 1 would be specialised away: export the dynamic model with 2 rows.
    two = x[:1].expand(2, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
    one = x[:1].contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    options = {"aot_inductor.package": True, "freezing": True}
    with quiet_cpp_builder(), torch.no_grad():
        files = {
            DYNAMIC: torch._inductor.aot_compile(
                torch.export.export(model, (two,), dynamic_shapes=({0: batch},)).module(), (two,), options=options),
            BATCH1: torch._inductor.aot_compile(torch.export.export(model, (one,)).module(), (one,), options=options),
        }
        package_aoti(str(path), files)
    return path


@register
class InductorEngine(Engine):
    name = "inductor"

    def status(self) -> tuple[bool, str]:
        version = dist_version("torch")
        if not have("torch") or version is None:
            return False, "torch is not installed; pip install torch torchvision"
        if _compiler() is None:
            return False, "Inductor needs a C++ compiler (g++ or clang++) on PATH; install one, e.g. apt-get install g++"
        return True, f"native PyTorch {version.split('+')[0]}: AOTInductor with freezing"

    def precisions(self, cpu) -> tuple[str, ...]:
        return ("fp32", "bf16", "int8")

    def plan_options(self, precision, native_bf16):
        return {"freezing": True, "package": "AOTInductor"}, []

    def describe(self) -> str:
        return "torch.export + AOTInductor (freezing, oneDNN fused convolutions, C++ wrapper)"

    def build(self, module, plan, example, out_dir, calibration=None) -> dict:
        out = Path(out_dir) / ARTIFACT
        if plan.precision == "int8":
            return quantize(self.name, module, list(calibration or []), Path(out_dir), threads=plan.threads,
                                        example=example, bf16=plan.native_bf16)
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


def load_package(path: Path, model_name: str = "model"):
    """``x -> logits`` from an AOTInductor package. Goes straight to the C++ package loader that
    ``torch._inductor.aoti_load_package`` wraps: importing ``torch._inductor`` costs seconds at every
    start (8 s on a busy 2-core box), and the wrapper's pytree (un)flattening adds Python per call."""
    import torch

    native = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if native is None:  # a torch without the native loader: the public wrapper
        with quiet_cpp_builder():
            package = torch._inductor.aoti_load_package(str(path), model_name=model_name)
        return lambda x: package(x)
    loader = native(str(path), model_name, False, 1, -1)  # (path, name, single-threaded, runners, device)
    return lambda x: loader.boxed_run([x])[0]
