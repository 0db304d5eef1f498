"""Intel Extension for PyTorch: channels-last, ipex.optimize, BF16 autocast, TorchScript trace + freeze,
saved as ``model.pt`` (frozen TorchScript; IPEX is imported before it is loaded).

IPEX is imported through :mod:`ipex_resnet.export.ipex`, which never imports a mismatched one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ipex_resnet.engines import register
from ipex_resnet.engines.base import Engine, torch_runner
from ipex_resnet.export.ipex import import_ipex, status

ARTIFACT = "model.pt"


def _run_fn(traced, bf16: bool):
    import torch

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return traced(x).float()

    return run


@register
class IpexEngine(Engine):
    name = "ipex"
    extra = "ipex"
    warmup_iters = 3  # the profiling executor fuses on the first calls

    def status(self) -> tuple[bool, str]:
        return status()

    def precisions(self, cpu) -> tuple[str, ...]:
        # oneDNN has BF16 kernels, native or emulated, only with AVX-512: on an AVX2-only CPU its BF16
        # primitives cannot be created ("could not create a descriptor for a pooling ... primitive").
        # INT8 needs VNNI or AMX: without them u8*s8 pairs go through saturating int16 sums, and on an
        # AVX2-only EPYC IPEX INT8 lost 9 top-1 points on EfficientNet-Lite1 and answered one image
        # differently at batch 1 and batch 25 (docs/accuracy.md).
        int8 = cpu.has("avx512_vnni") or cpu.has("avx_vnni") or cpu.has("amx_tile", "amx_int8")
        return ("fp32",) + (("bf16",) if cpu.has_avx512_core else ()) + (("int8",) if int8 else ())

    def plan_options(self, precision, native_bf16):
        prepack = not (precision == "bf16" and not native_bf16)
        warnings_ = (
            []
            if prepack
            else [
                "IPEX BF16 weight prepacking needs native BF16 (AVX-512 kernels); "
                "weights_prepack was changed to False so the emulated path can run"
            ]
        )
        return {"jit": "trace+freeze", "weights_prepack": prepack}, warnings_

    def describe(self) -> str:
        return "ipex.optimize + TorchScript trace/freeze (oneDNN fusions)"

    def build(self, module, plan, example, out_dir) -> dict:
        import torch

        ipex = import_ipex()
        bf16 = plan.precision == "bf16"
        dtype = torch.bfloat16 if bf16 else torch.float32
        model = module.eval().to(memory_format=torch.channels_last)
        example = torch.as_tensor(example).float().contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IPEX warns about its own defaults at every call
            model = ipex.optimize(
                model, dtype=dtype, inplace=False, weights_prepack=bool(plan.options.get("weights_prepack", True))
            )
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        torch.jit.save(traced, str(Path(out_dir) / ARTIFACT))
        return {"artifact": ARTIFACT}

    def load(self, out_dir, plan):
        import torch

        import_ipex()  # registers IPEX's ops before TorchScript resolves them
        traced = torch.jit.load(str(Path(out_dir) / ARTIFACT), map_location="cpu")
        return torch_runner(_run_fn(traced, plan.precision == "bf16"))
