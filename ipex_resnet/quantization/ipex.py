"""IPEX INT8: Intel Extension for PyTorch static quantization, traced and frozen (``model.pt``).

The flow from IPEX's "Intel Extension for PyTorch quantization" guide:
``ipex.quantization.prepare(model, default_static_qconfig_mapping, example_inputs)`` -> calibrate
-> ``convert`` -> ``torch.jit.trace`` + ``torch.jit.freeze`` (oneDNN Graph fuses the quantized
conv/add/relu partitions on the first runs after loading) -> ``torch.jit.save``. The default static
qconfig observes activations per tensor (uint8, histogram) and weights per channel (int8,
symmetric). INT8+BF16 traces under CPU autocast, as the guide shows. The loader must import IPEX
before ``torch.jit.load`` (its int8 ops are registered on import).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from ._common import check_calibration, count, missing, torch_threads, version

ARTIFACT = "model.pt"
HINT = "IPEX runs on its own torch pin: pip install 'ipex_resnet[ipex]' (see README)"


def status() -> tuple[bool, str]:
    if missing("intel_extension_for_pytorch"):
        return False, f"intel_extension_for_pytorch is not installed; {HINT}"
    return True, f"IPEX {version('intel_extension_for_pytorch')} static quantization"


def quantize(module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False) -> dict[str, Any]:
    batches = check_calibration(calibration)
    try:
        import intel_extension_for_pytorch as ipex
        from intel_extension_for_pytorch.quantization import convert, prepare
    except ImportError:
        from ..errors import BackendUnavailable

        raise BackendUnavailable(f"IPEX INT8 needs intel_extension_for_pytorch; {HINT}") from None
    import torch

    class Float32Out(torch.nn.Module):
        """Float32 logits out (under BF16 autocast the last layer would return bfloat16)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x).float()

    x = torch.from_numpy(check_calibration([example])[0])
    with torch_threads(threads), torch.no_grad():
        model = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
        prepared = prepare(model, ipex.quantization.default_static_qconfig_mapping,
                           example_inputs=(x,), inplace=False)
        for b in batches:
            prepared(torch.from_numpy(b).contiguous(memory_format=torch.channels_last))
        converted = convert(prepared)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), warnings.catch_warnings():
            # IPEX's quant stubs read their scales with .item(): constants by design, not a tracing bug
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="JIT pass will be deprecated")  # IPEX 2.8's notice
            traced = torch.jit.trace(Float32Out(converted).eval(), x, check_trace=False)
            traced = torch.jit.freeze(traced)
            for _ in range(2):  # let oneDNN Graph profile and fuse before saving, as the guide does
                traced(x)
        torch.jit.save(traced, str(Path(out_dir) / ARTIFACT))
    return {
        "scheme": "static IPEX (default_static_qconfig_mapping): per-channel symmetric int8 weights, "
                  "per-tensor affine uint8 activations" + (", BF16 for the rest" if bf16 else ""),
        "tool": f"intel_extension_for_pytorch {version('intel_extension_for_pytorch')}",
        "calibration_images": count(batches),
        "bf16": bool(bf16),
    }
