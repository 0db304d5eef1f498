"""ONNX Runtime INT8: ``quantize_static`` in QDQ format, per-channel, S8S8 (``model.onnx``).

The flow from ONNX Runtime's quantization guide: FP32 ONNX export -> ``quant_pre_process`` (shape
inference + graph optimization, so Conv+BN are fused before calibration) -> ``quantize_static`` with
a ``CalibrationDataReader`` over the calibration images (MinMax calibration, the default), QDQ
format, per-channel weights, signed int8 activations and weights (S8S8, the guide's default for
x86 with VNNI).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable
from ._common import check_calibration, count, images, missing, version

ARTIFACT = "model.onnx"
HINT = "pip install onnxruntime onnx onnxscript (or pip install 'ipex_resnet[int8]')"


def status() -> tuple[bool, str]:
    gone = missing("onnxruntime", "onnx")
    if gone:
        return False, f"{gone} is not installed; {HINT}"
    return True, f"onnxruntime {version('onnxruntime')} quantize_static (QDQ, S8S8)"


def quantize_onnx(fp32_onnx: Path, calibration, out_path: Path) -> dict[str, Any]:
    """Quantize an FP32 ONNX file to ``out_path`` (QDQ, per-channel, S8S8)."""
    try:
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                              quant_pre_process, quantize_static)
    except ImportError:
        raise BackendUnavailable(f"ONNX Runtime INT8 needs onnxruntime: {HINT}") from None
    batches = check_calibration(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self, name: str):
            self.name = name
            self.items = images(batches)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {self.name: item}

    import onnx

    name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ort_q_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        quantize_static(str(pre), str(out_path), Reader(name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return {
        "scheme": "static QDQ (MinMax): per-channel int8 weights, per-tensor int8 activations (S8S8)",
        "tool": f"onnxruntime {version('onnxruntime')}",
        "calibration_images": count(batches),
    }


def quantize(module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False) -> dict[str, Any]:
    from ..engines.onnx_export import export_onnx

    check_calibration(calibration)
    crop = int(check_calibration([example])[0].shape[-1])
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ort_fp32_") as tmp:
        fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", crop=crop)
        info = quantize_onnx(fp32, calibration, Path(out_dir) / ARTIFACT)
    info["bf16"] = False  # ORT's CPU provider has no BF16 path for these ops
    return info
