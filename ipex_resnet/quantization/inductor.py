"""Inductor INT8: PT2E static quantization lowered by AOTInductor (``model.pt2``).

The flow is the one in PyTorch's "PT2E quantization with X86 backend through Inductor" tutorial:
``torch.export`` -> ``X86InductorQuantizer`` (default config: per-channel symmetric int8 weights,
per-tensor affine uint8 activations) -> ``prepare_pt2e`` -> calibrate -> ``convert_pt2e``, then the
quantized graph is exported again and compiled with freezing so Inductor's oneDNN passes fold the
dequant/conv/quant patterns into ``qconv`` kernels with prepacked int8 weights.

Two details decide whether it works:

* the quantizer lives in ``torchao.quantization.pt2e`` on torch >= 2.10 (``torch.ao.quantization``
  before; both are supported, chosen by what is importable);
* the first export must be **strict** (``strict=True``). The default non-strict export groups every
  call site of one module instance (ResNet's ``BasicBlock.relu`` is called twice) into one source
  partition with several outputs, and the quantizer's conv+add+relu annotation raises "Input
  partition has more than one output node" (pytorch/ao#4478, fixed only for Linear in #4480).
  Strict export (Dynamo) gives each call site its own partition.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from ._common import check_calibration, count, missing, torch_threads, version

ARTIFACT = "model.pt2"
DYNAMIC = "model"   #: the package's default model: any batch size
BATCH1 = "batch1"   #: the same model specialized for a batch of one
MAX_BATCH = 1024


def status() -> tuple[bool, str]:
    import os
    import shutil

    import torch

    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile; pip install -U torch"
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")):
        return False, "Inductor needs a C++ compiler (g++ or clang++) on PATH"
    if missing("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer") and \
            missing("torch.ao.quantization.quantizer.x86_inductor_quantizer"):
        return False, ("the PT2E X86InductorQuantizer is missing: on torch >= 2.10 pip install torchao "
                       "(or pip install 'ipex_resnet[int8]')")
    return True, "PT2E X86InductorQuantizer + AOTInductor"


def _pt2e():
    """(prepare_pt2e, convert_pt2e, quantizer module, tool name) from torchao or torch.ao."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torchao {version('torchao')}"
    except ImportError:
        pass
    try:
        import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        from ..errors import BackendUnavailable

        raise BackendUnavailable("Inductor INT8 needs the PT2E X86InductorQuantizer: on torch >= 2.10 "
                                 "pip install torchao (or pip install 'ipex_resnet[int8]')") from None
    import torch

    return prepare_pt2e, convert_pt2e, xiq, f"torch.ao (torch {torch.__version__.split('+')[0]})"


def _export(module, x, strict: bool):
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module, (x,), dynamic_shapes=({0: batch},), strict=strict)


def _compile(module, x, path: Path, bf16: bool) -> None:
    """AOTInductor package with two models: ``model`` (any batch) and ``batch1`` (batch of one).

    oneDNN picks faster int8 kernels when it knows the batch; batch 1 (the latency case) is ~10%
    faster specialized. Both use the package format's documented multi-model layout
    (``torch._inductor.package.package_aoti``): ``torch._inductor.aoti_load_package(path)`` loads
    ``model``; ``torch._inductor.package.load_package(path, BATCH1)`` the specialized one.
    """
    import torch
    from torch._inductor.package import package_aoti

    options = {"aot_inductor.package": True, "freezing": True}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), warnings.catch_warnings():
        # Inductor's own int8 lowering copy-constructs a tensor; not the user's business
        warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
        files = {
            DYNAMIC: torch._inductor.aot_compile(_export(module, x, strict=True).module(), (x,),
                                                 options=options),
        }
        one = x[:1].clone(memory_format=torch.channels_last)
        files[BATCH1] = torch._inductor.aot_compile(
            torch.export.export(module, (one,), strict=True).module(), (one,), options=options)
    package_aoti(str(path), files)


def quantize(module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False) -> dict[str, Any]:
    import torch

    batches = check_calibration(calibration)
    x = torch.from_numpy(check_calibration([example])[0])
    if x.shape[0] < 2:  # an example batch of 1 would specialize the batch dimension to 1
        x = x.expand(2, *x.shape[1:]).contiguous()

    class Float32Out(torch.nn.Module):
        """The quantized graph with float32 logits out (BF16 autocast would return bfloat16)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inp):
            return self.inner(inp).float()

    with torch_threads(threads), torch.no_grad(), warnings.catch_warnings():
        # torch 2.8's torch.ao PT2E announces its move to torchao: we use torchao where it exists
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"erase_node\(.*\) on an already erased node")  # torch 2.8
        prepare_pt2e, convert_pt2e, xiq, tool = _pt2e()
        exported = _export(module.eval(), x, strict=True).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        for b in batches:
            prepared(torch.from_numpy(b))
        converted = convert_pt2e(prepared)

        log = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found": not news
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            # channels-last input, as the engine's loader feeds it (AOTInductor trusts the strides it
            # was compiled for: a contiguous-compiled package fed NHWC would compute garbage)
            _compile(Float32Out(converted), x.contiguous(memory_format=torch.channels_last),
                     Path(out_dir) / ARTIFACT, bf16)
        finally:
            log.setLevel(level)
    return {
        "scheme": "static PT2E (X86InductorQuantizer): per-channel symmetric int8 weights, "
                  "per-tensor affine uint8 activations" + (", BF16 for the rest" if bf16 else ""),
        "tool": tool,
        "calibration_images": count(batches),
        "bf16": bool(bf16),
    }
