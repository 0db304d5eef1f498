"""Eager PyTorch: the unmodified FP32 reference (BF16 autocast only when explicitly requested)."""

from __future__ import annotations

from ipex_resnet.engines import register
from ipex_resnet.engines.base import Engine, torch_runner
from ipex_resnet.util.deps import installed


@register
class EagerEngine(Engine):
    name = "eager"
    cacheable = False
    memory_format = "contiguous"

    def status(self) -> tuple[bool, str]:
        if not installed("torch"):
            return False, "torch is not installed; pip install torch torchvision"
        return True, "eager PyTorch always runs (the unoptimized reference)"

    def describe(self) -> str:
        return "the unmodified module (the FP32 reference)"

    def prepare(self, module, plan, example):
        if plan.precision == "int8":
            from ipex_resnet.errors import BackendUnavailable

            raise BackendUnavailable(
                "eager runs fp32 or bf16 only; for int8 choose inductor, ipex, openvino or onnxruntime"
            )
        import torch

        model = module.eval()
        bf16 = plan.precision == "bf16"

        @torch.no_grad()
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return model(x).float()

        # every stream calls the one module (an eval-mode forward reads its weights, writes nothing)
        runner = torch_runner(run)
        return self.streams_of(lambda _plan: runner, plan)
