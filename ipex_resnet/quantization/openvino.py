"""OpenVINO INT8: NNCF post-training quantization (``model.xml`` + ``model.bin``).

The flow from NNCF's "post-training quantization for OpenVINO" guide: read the FP32 ONNX export
with ``ov.Core().read_model``, wrap the calibration images in ``nncf.Dataset`` (one image per item,
as the guide shows), ``nncf.quantize`` with the default (performance) preset -- symmetric int8
weights per channel and activations per tensor -- and save the IR uncompressed
(``compress_to_fp16=False``; the weights are int8 already). INT8+BF16 is a run-time choice in
OpenVINO (``INFERENCE_PRECISION_HINT``), so ``bf16`` does not change the artifact.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable
from ._common import check_calibration, count, images, missing, version

ARTIFACT = "model.xml"
HINT = "pip install openvino nncf onnx onnxscript (or pip install 'ipex_resnet[int8]')"


def status() -> tuple[bool, str]:
    gone = missing("openvino", "nncf", "onnx")
    if gone:
        return False, f"{gone} is not installed; {HINT}"
    return True, f"nncf {version('nncf')} post-training quantization for openvino {version('openvino')}"


def quantize_model(fp32_onnx: Path, calibration):
    """An NNCF-quantized ``ov.Model`` from an FP32 ONNX file, and the info dict."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise BackendUnavailable(f"OpenVINO INT8 needs openvino and nncf: {HINT}") from None
    batches = check_calibration(calibration)
    n = count(batches)
    model = ov.Core().read_model(str(fp32_onnx))
    dataset = nncf.Dataset(list(images(batches)))
    quantized = nncf.quantize(model, dataset, subset_size=n)
    info = {
        "scheme": "static NNCF PTQ (performance preset): per-channel symmetric int8 weights, "
                  "per-tensor int8 activations",
        "tool": f"nncf {version('nncf')}, openvino {version('openvino')}",
        "calibration_images": n,
    }
    return quantized, info


def quantize(module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False) -> dict[str, Any]:
    from ..engines.onnx_export import export_onnx

    check_calibration(calibration)
    crop = int(check_calibration([example])[0].shape[-1])
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ov_fp32_") as tmp:
        fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", crop=crop)
        quantized, info = quantize_model(fp32, calibration)
        import openvino as ov

        ov.save_model(quantized, str(Path(out_dir) / ARTIFACT), compress_to_fp16=False)
    info["bf16"] = bool(bf16)  # applied at compile time by the engine (INFERENCE_PRECISION_HINT)
    return info
