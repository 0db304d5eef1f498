"""Native PyTorch: channels-last + torch.compile (Inductor) with freezing, BF16 autocast where chosen.

Inductor is PyTorch's own successor to IPEX's CPU optimizations (oneDNN fusions, weight prepacking via
freezing). It generates C++ and needs a C++ compiler at run time.
"""

from __future__ import annotations

import logging
import os
import shutil

import torch

WARMUP_ITERS = 2


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")


def status() -> tuple[bool, str]:
    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile; upgrade: pip install -U torch torchvision"
    if _compiler() is None:
        return False, "Inductor needs a C++ compiler (g++ or clang++) on PATH; install one, e.g. apt-get install g++"
    return True, f"native PyTorch {torch.__version__.split('+')[0]}: Inductor with freezing"


def prepare(model: torch.nn.Module, plan, example: torch.Tensor):
    bf16 = plan.precision == "bf16"
    model = model.eval().to(memory_format=torch.channels_last)
    compiled = torch.compile(model, options={"freezing": True})

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return compiled(x).float()

    # torch's C++ builder logs "No CUDA runtime is found" on CUDA wheels; not news on a CPU box.
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        for _ in range(WARMUP_ITERS):
            run(example)
    finally:
        log.setLevel(level)
    return run
