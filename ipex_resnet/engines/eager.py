"""Eager PyTorch: the unmodified FP32 reference (BF16 autocast only when explicitly requested)."""

from __future__ import annotations

from . import register
from .base import Engine, have, torch_runner


@register
class EagerEngine(Engine):
    name = "eager"
    cacheable = False
    memory_format = "contiguous"

    def status(self) -> tuple[bool, str]:
        if not have("torch"):
            return False, "torch is not installed; pip install torch torchvision"
        return True, "eager PyTorch always runs (the unoptimized reference)"

    def describe(self) -> str:
        return "the unmodified module (the FP32 reference)"

    def prepare(self, module, plan, example, calibration=None):
        if plan.precision == "int8":
            from ..errors import BackendUnavailable

            raise BackendUnavailable("eager runs fp32 or bf16 only; for int8 choose inductor, ipex, openvino "
                                     "or onnxruntime")
        import torch

        model = module.eval()
        bf16 = plan.precision == "bf16"

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x).float()

        return torch_runner(run)
