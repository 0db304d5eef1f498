"""Native PyTorch: AOTInductor. ``torch.export`` -> freezing (oneDNN prepacked convolutions with fused
post-ops) -> one C++ package (``model.pt2``) with no Python between kernels.

BF16 runs with BF16 weights and activations inside the package (the input is cast in the graph), which
measured 6.7 ms vs 7.8 ms for ``torch.compile`` + autocast on ResNet-18 here; exporting under autocast
instead leaves the convolutions unfused (~240 ms). Loading a package takes ~15 ms, so a cached one
starts in the time it takes to import torch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from . import register
from .base import Engine, dist_version, have, quantizer, torch_runner

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


def export(module, example, *, bf16: bool):
    """``torch.export`` with a dynamic batch dimension; BF16 weights and an in-graph input cast."""
    import torch

    class Cast(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.to(torch.bfloat16)).float()

    model = module.eval().to(memory_format=torch.channels_last)
    if bf16:
        import copy

        model = Cast(copy.deepcopy(model).to(torch.bfloat16)).eval()
    # A batch of 1 would be specialised away: export with 2 rows, batch dimension declared dynamic.
    x = torch.as_tensor(example).float()
    x = x[:1].expand(2, *x.shape[1:]).contiguous(memory_format=torch.channels_last)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(model, (x,), dynamic_shapes=({0: batch},))


def compile_package(program, path: Path) -> Path:
    import torch
    import torch._inductor.config as inductor_config

    with quiet_cpp_builder(), inductor_config.patch(freezing=True), torch.no_grad():
        return Path(torch._inductor.aoti_compile_and_package(program, package_path=str(path)))


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
            return quantizer(self.name)(module, list(calibration or []), Path(out_dir), threads=plan.threads,
                                        example=example, bf16=plan.native_bf16)
        compile_package(export(module, example, bf16=plan.precision == "bf16"), out)
        return {"artifact": ARTIFACT}

    def load(self, out_dir, plan):
        import torch

        run_package = load_package(Path(out_dir) / ARTIFACT)

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            return run_package(x.contiguous(memory_format=torch.channels_last)).float()

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
