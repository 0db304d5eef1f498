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

``keep_float`` leaves submodules unquantized with the quantizer's own
``X86InductorQuantizer.set_module_name_qconfig(name, None)``: it matches the ``nn_module_stack``
that export records on every node (keyed by the ``named_modules()`` name), annotates the
submodule's conv/linear as "not quantized", and so ``convert_pt2e`` leaves its weight in float and
Inductor lowers it as a float (or, under BF16 autocast, bfloat16) op. :func:`quantized_layers`
reads that back from the converted graph; ``kept_float`` in the info lists only names it confirms.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.export.aoti import MAX_BATCH, compile_package
from ipex_resnet.quantization._common import (
    check_calibration,
    check_keep_float,
    count,
    inside,
    reduced_range_here,
    torch_threads,
)
from ipex_resnet.util.deps import dist_version, first_missing

ARTIFACT = "model.pt2"


def status() -> tuple[bool, str]:
    import os
    import shutil

    import torch

    if not hasattr(torch, "compile"):
        return False, f"torch {torch.__version__} has no torch.compile; pip install -U torch"
    if not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++") or shutil.which("clang++")):
        return False, "Inductor needs a C++ compiler (g++ or clang++) on PATH"
    if first_missing("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer") and first_missing(
        "torch.ao.quantization.quantizer.x86_inductor_quantizer"
    ):
        return False, (
            "the PT2E X86InductorQuantizer is missing: on torch >= 2.10 pip install torchao "
            "(or pip install 'ipex_resnet[int8]')"
        )
    return True, "PT2E X86InductorQuantizer + AOTInductor"


def _pt2e():
    """(prepare_pt2e, convert_pt2e, quantizer module, tool name) from torchao or torch.ao."""
    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        return prepare_pt2e, convert_pt2e, xiq, f"torchao {(dist_version('torchao') or '?')}"
    except ImportError:
        pass
    try:
        import torch.ao.quantization.quantizer.x86_inductor_quantizer as xiq
        from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        from ipex_resnet.errors import BackendUnavailable

        raise BackendUnavailable(
            "Inductor INT8 needs the PT2E X86InductorQuantizer: on torch >= 2.10 "
            "pip install torchao (or pip install 'ipex_resnet[int8]')"
        ) from None
    import torch

    return prepare_pt2e, convert_pt2e, xiq, f"torch.ao (torch {torch.__version__.split('+')[0]})"


def _export(module, x, strict: bool):
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module, (x,), dynamic_shapes=({0: batch},), strict=strict)


def _example(example):
    import torch

    x = torch.from_numpy(check_calibration([example])[0])
    if x.shape[0] < 2:  # an example batch of 1 would specialize the batch dimension to 1
        x = x.expand(2, *x.shape[1:]).contiguous()
    return x


def quantized_graph(
    module, calibration, *, example, threads: int = 0, keep_float: Sequence[str] = (), reduce_range: bool | None = None
):
    """The PT2E-converted ``torch.fx.GraphModule`` (before Inductor) and the tool's name:
    strict export -> ``X86InductorQuantizer`` (default config, 7-bit activations when
    ``reduce_range``, by default on a CPU without VNNI; ``keep_float`` submodules set to ``None``)
    -> ``prepare_pt2e`` -> calibrate -> ``convert_pt2e``."""
    import torch

    batches = check_calibration(calibration)
    keep = check_keep_float(module, keep_float)
    x = _example(example)
    reduce = reduced_range_here() if reduce_range is None else bool(reduce_range)
    with torch_threads(threads), torch.no_grad(), warnings.catch_warnings():
        # torch 2.8's torch.ao PT2E announces its move to torchao: we use torchao where it exists
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"erase_node\(.*\) on an already erased node")  # torch 2.8
        prepare_pt2e, convert_pt2e, xiq, tool = _pt2e()
        exported = _export(module.eval(), x, strict=True).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce))
        for name in keep:
            quantizer.set_module_name_qconfig(name, None)
        prepared = prepare_pt2e(exported, quantizer)
        for b in batches:
            prepared(torch.from_numpy(b))
        return convert_pt2e(prepared), tool


def _owner(node) -> str | None:
    """The innermost submodule a graph node was traced from (its ``nn_module_stack``)."""
    stack = node.meta.get("nn_module_stack") or {}
    names = [path for path, _ in stack.values()]
    if not names:
        return None
    name = names[-1]
    return name.removeprefix("L['self'].")


def quantized_layers(graph_module) -> dict[str, bool]:
    """``{submodule name: whether its conv/linear runs in int8}`` for a converted PT2E graph: an op is
    int8 when its weight comes from a ``dequantize_per_channel`` (a quantized weight), float when the
    weight is the float parameter itself."""
    import torch

    ops = {torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    out: dict[str, bool] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or node.target not in ops or len(node.args) < 2:
            continue
        weight = node.args[1]
        target = getattr(weight, "target", None)
        out[_owner(node) or node.name] = "dequantize" in str(target)
    return out


def quantize(
    module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False, keep_float: Sequence[str] = ()
) -> dict[str, Any]:
    import torch

    batches = check_calibration(calibration)
    keep = check_keep_float(module, keep_float)
    x = _example(example)

    class Float32Out(torch.nn.Module):
        """The quantized graph with float32 logits out (BF16 autocast would return bfloat16)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inp):
            return self.inner(inp).float()

    reduce = reduced_range_here()
    converted, tool = quantized_graph(
        module, batches, example=x.numpy(), threads=threads, keep_float=keep, reduce_range=reduce
    )
    layers = quantized_layers(converted)
    kept = [
        k
        for k in keep
        if any(inside(name, k) for name in layers) and not any(q for name, q in layers.items() if inside(name, k))
    ]
    with torch_threads(threads), torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"erase_node\(.*\) on an already erased node")  # torch 2.8
        compile_package(Float32Out(converted), x, Path(out_dir) / ARTIFACT, strict=True, autocast_bf16=bf16)
    return {
        "scheme": "static PT2E (X86InductorQuantizer): per-channel symmetric int8 weights, "
        "per-tensor affine uint8 activations"
        + (" in 7 bits (reduce_range: no VNNI or AMX)" if reduce else "")
        + (", BF16 for the rest" if bf16 else "")
        + (f", {len(kept)} submodule(s) kept in {'BF16' if bf16 else 'FP32'}" if kept else ""),
        "tool": tool,
        "calibration_images": count(batches),
        "bf16": bool(bf16),
        "kept_float": kept,
        "reduce_range": reduce,
    }
