"""FP32 ONNX export shared by the OpenVINO and ONNX Runtime engines (and their INT8 flows)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.util.deps import installed

ONNX_HINT = "pip install onnx onnxscript (or pip install 'ipex_resnet[openvino]' / 'ipex_resnet[onnxruntime]')"


def export_onnx(module: torch.nn.Module, path: str | os.PathLike, crop: int = 224) -> Path:
    """Export ``module`` (FP32, eval) to ONNX with a dynamic batch dimension."""
    if not installed("onnx"):
        raise BackendUnavailable(f"onnx is not installed; {ONNX_HINT}")
    path = Path(path)
    module = module.eval()
    example = (torch.randn(1, 3, crop, crop),)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            # The TorchScript exporter: quiet, fast, and still shipped by every torch we support.
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        except Exception:
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                verbose=False,
            )
    if not path.is_file():
        raise BackendUnavailable(f"torch.onnx.export wrote nothing at {path}")
    return path
