"""OpenVINO INT8: NNCF post-training quantization (``model.xml`` + ``model.bin``).

The flow from NNCF's "post-training quantization for OpenVINO" guide: read the FP32 ONNX export
with ``ov.Core().read_model``, wrap the calibration images in ``nncf.Dataset`` (one image per item,
as the guide shows), ``nncf.quantize`` with the default (performance) preset -- symmetric int8
weights per channel and activations per tensor -- and save the IR uncompressed
(``compress_to_fp16=False``; the weights are int8 already). INT8+BF16 is a run-time choice in
OpenVINO (``INFERENCE_PRECISION_HINT``), so ``bf16`` does not change the artifact.

``keep_float`` leaves submodules unquantized with NNCF's own ``nncf.IgnoredScope(names=...)``: the
OpenVINO ops of a submodule are found by their names, which the ONNX frontend derives from the ONNX
node scopes (``/layer1/layer1.0/conv2/Conv/WithoutBiases`` is ``layer1.0.conv2``, see
:func:`._common.scope_owner`), so only names that exist are passed and NNCF inserts no FakeQuantize
on their inputs or weights.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.quantization._common import check_calibration, check_keep_float, count, images, module_names, owned_by
from ipex_resnet.util.deps import dist_version, first_missing

ARTIFACT = "model.xml"
HINT = "pip install openvino nncf onnx onnxscript (or pip install 'ipex_resnet[int8]')"


def status() -> tuple[bool, str]:
    gone = first_missing("openvino", "nncf", "onnx")
    if gone:
        return False, f"{gone} is not installed; {HINT}"
    return (
        True,
        f"nncf {(dist_version('nncf') or '?')} post-training quantization for openvino {(dist_version('openvino') or '?')}",
    )


# op types that are graph plumbing, not computation: never named in an IgnoredScope
_PLUMBING = {"Constant", "Parameter", "Result"}


def ignored_ops(model, keep_float: Sequence[str], known: Collection[str]) -> dict[str, list[str]]:
    """``{submodule: [its OpenVINO op names]}`` for the ``keep_float`` submodules found in ``model``."""
    ops = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() not in _PLUMBING]
    return owned_by(ops, keep_float, known)


def quantize_model(fp32_onnx: Path, calibration, *, keep_float: Sequence[str] = (), known: Collection[str] = ()):
    """An NNCF-quantized ``ov.Model`` from an FP32 ONNX file, and the info dict. ``keep_float`` names
    submodules (``known`` holds every submodule name of the exported module) to leave in FP32."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise BackendUnavailable(f"OpenVINO INT8 needs openvino and nncf: {HINT}") from None
    batches = check_calibration(calibration)
    n = count(batches)
    model = ov.Core().read_model(str(fp32_onnx))
    dataset = nncf.Dataset(list(images(batches)))
    ignored = ignored_ops(model, keep_float, known) if keep_float else {}
    scope = nncf.IgnoredScope(names=[op for ops in ignored.values() for op in ops]) if ignored else None
    quantized = nncf.quantize(model, dataset, subset_size=n, ignored_scope=scope)
    info = {
        "scheme": "static NNCF PTQ (performance preset): per-channel symmetric int8 weights, "
        "per-tensor int8 activations" + (f", {len(ignored)} submodule(s) kept in FP32" if ignored else ""),
        "tool": f"nncf {(dist_version('nncf') or '?')}, openvino {(dist_version('openvino') or '?')}",
        "calibration_images": n,
        "kept_float": list(ignored),
    }
    return quantized, info


def quantize(
    module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False, keep_float: Sequence[str] = ()
) -> dict[str, Any]:
    from ipex_resnet.export.onnx import export_onnx

    check_calibration(calibration)
    keep = check_keep_float(module, keep_float)
    crop = int(check_calibration([example])[0].shape[-1])
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ov_fp32_") as tmp:
        fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", crop=crop)
        quantized, info = quantize_model(fp32, calibration, keep_float=keep, known=module_names(module))
        import openvino as ov

        ov.save_model(quantized, str(Path(out_dir) / ARTIFACT), compress_to_fp16=False)
    info["bf16"] = bool(bf16)  # applied at compile time by the engine (INFERENCE_PRECISION_HINT)
    return info
