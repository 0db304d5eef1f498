"""IPEX INT8: Intel Extension for PyTorch static quantization, traced and frozen (``model.pt``).

The flow from IPEX's "Intel Extension for PyTorch quantization" guide:
``ipex.quantization.prepare(model, default_static_qconfig_mapping, example_inputs)`` -> calibrate
-> ``convert`` -> ``torch.jit.trace`` + ``torch.jit.freeze`` (oneDNN Graph fuses the quantized
conv/add/relu partitions on the first runs after loading) -> ``torch.jit.save``. The default static
qconfig observes activations per tensor (uint8, histogram) and weights per channel (int8,
symmetric). INT8+BF16 traces under CPU autocast, as the guide shows. The loader must import IPEX
before ``torch.jit.load`` (its int8 ops are registered on import).

``keep_float``: IPEX's ``prepare`` reads only the *global* qconfig of a ``QConfigMapping``
(``set_module_name`` entries are ignored), so submodules are left in float with IPEX's own recipe
file instead -- the "qconf summary" that ``prepared.save_qconf_summary`` writes after calibration
and ``load_qconf_summary`` reads back (the file IPEX's INC-based autotune edits to fall ops back):
every quantizable op whose ``fqn`` is a kept submodule gets ``torch.float32`` as the inference dtype
of its inputs and weights, so ``convert`` puts no quantize/dequantize around it and its weight stays
a float constant in the frozen TorchScript (BF16 under the INT8+BF16 autocast trace).
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.export.ipex import import_ipex
from ipex_resnet.quantization._common import check_calibration, check_keep_float, count, inside, torch_threads
from ipex_resnet.util.deps import dist_version, first_missing

ARTIFACT = "model.pt"
HINT = "IPEX runs on its own torch pin: pip install 'ipex_resnet[ipex]' (see README)"


def status() -> tuple[bool, str]:
    if first_missing("intel_extension_for_pytorch"):
        return False, f"intel_extension_for_pytorch is not installed; {HINT}"
    return True, f"IPEX {(dist_version('intel_extension_for_pytorch') or '?')} static quantization"


FLOAT = "torch.float32"


def fall_back(summary: dict, keep_float: Sequence[str]) -> list[str]:
    """Mark the ops of the ``keep_float`` submodules in a qconf summary (``save_qconf_summary``'s JSON)
    to run in float: inputs and weights with ``torch.float32`` as inference dtype. Returns the kept
    names that own at least one quantizable op."""
    kept: set[str] = set()
    for state in summary.values():
        for op in (state.get("q_op_infos") or {}).values():
            owner = next((k for k in keep_float if inside(str(op.get("fqn") or ""), k)), None)
            if owner is None:
                continue
            for tensor in op.get("input_tensor_infos") or []:
                if tensor:
                    tensor["inf_dtype"] = tensor["force_dtype"] = FLOAT
            for tensor in op.get("weight_tensor_infos") or []:
                if tensor:
                    tensor["inf_dtype"] = FLOAT
            kept.add(owner)
    return [k for k in keep_float if k in kept]


def quantize(
    module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False, keep_float: Sequence[str] = ()
) -> dict[str, Any]:
    batches = check_calibration(calibration)
    keep = check_keep_float(module, keep_float)
    ipex = import_ipex()  # BackendUnavailable with the install hint when IPEX cannot run here
    import torch
    from intel_extension_for_pytorch.quantization import convert, prepare

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
        prepared = prepare(model, ipex.quantization.default_static_qconfig_mapping, example_inputs=(x,), inplace=False)
        for b in batches:
            prepared(torch.from_numpy(b).contiguous(memory_format=torch.channels_last))
        kept: list[str] = []
        if keep:
            with tempfile.TemporaryDirectory(prefix="ipex_resnet_ipex_qconf_") as tmp:
                summary_file = Path(tmp) / "qconf.json"
                prepared.save_qconf_summary(qconf_summary=str(summary_file))
                summary = json.loads(summary_file.read_text())
                kept = fall_back(summary, keep)
                summary_file.write_text(json.dumps(summary))
                prepared.load_qconf_summary(qconf_summary=str(summary_file))
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
        "per-tensor affine uint8 activations"
        + (", BF16 for the rest" if bf16 else "")
        + (f", {len(kept)} submodule(s) kept in {'BF16' if bf16 else 'FP32'}" if kept else ""),
        "tool": f"intel_extension_for_pytorch {(dist_version('intel_extension_for_pytorch') or '?')}",
        "calibration_images": count(batches),
        "bf16": bool(bf16),
        "kept_float": kept,
    }
