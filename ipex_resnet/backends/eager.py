"""Eager PyTorch: the unmodified FP32 reference (BF16 autocast only when explicitly requested)."""

from __future__ import annotations

import torch


def status() -> tuple[bool, str]:
    return True, "eager PyTorch always runs (the unoptimized reference)"


def prepare(model: torch.nn.Module, plan, example: torch.Tensor):
    model = model.eval()
    bf16 = plan.precision == "bf16"

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x).float()

    return run
