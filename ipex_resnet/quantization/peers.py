"""INT8 peers for the benchmark: OpenVINO+NNCF and ONNX Runtime QDQ, used directly as their docs show.

Both start from the same FP32 ONNX export as the FP32 peers (:mod:`ipex_resnet.peers`), quantize
with the tool's documented static flow and default settings (the same calls as the engines'
artifacts, :mod:`.openvino` and :mod:`.onnxruntime`), and run with the runtime's default session --
only the thread count is set, as for every row of the benchmark. No tuning of ours.
Runners take a float32 NCHW numpy batch and return float32 logits (numpy).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ipex_resnet.quantization._common import check_calibration

INT8_PEERS = ("openvino", "onnxruntime")

NumpyRunner = Callable[[np.ndarray], np.ndarray]


def _export(module, crop: int, workdir: Path) -> Path:
    from ipex_resnet.export.onnx import export_onnx

    return export_onnx(module, workdir / "fp32.onnx", crop=crop)


def openvino_int8(
    module, calibration, *, threads: int, crop: int = 224, workdir: str | Path | None = None
) -> NumpyRunner:
    """NNCF ``nncf.quantize`` on the ONNX export, compiled by OpenVINO for CPU."""
    from ipex_resnet.quantization.openvino import quantize_model

    check_calibration(calibration)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="ipex_resnet_peer_ov_"))
    workdir.mkdir(parents=True, exist_ok=True)
    quantized, _ = quantize_model(_export(module, crop, workdir), calibration)
    import openvino as ov

    compiled = ov.Core().compile_model(
        quantized, "CPU", {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return request.get_output_tensor(0).data.copy()

    return run


def onnxruntime_int8(
    module, calibration, *, threads: int, crop: int = 224, workdir: str | Path | None = None
) -> NumpyRunner:
    """ORT ``quantize_static`` (QDQ, per-channel, S8S8) on the ONNX export, default CPU session."""
    from ipex_resnet.quantization.onnxruntime import quantize_onnx

    check_calibration(calibration)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="ipex_resnet_peer_ort_"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "int8.onnx"
    quantize_onnx(_export(module, crop, workdir), calibration, out)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


def prepare(
    name: str, module, calibration, *, threads: int, crop: int = 224, workdir: str | Path | None = None
) -> NumpyRunner:
    if name == "openvino":
        return openvino_int8(module, calibration, threads=threads, crop=crop, workdir=workdir)
    if name == "onnxruntime":
        return onnxruntime_int8(module, calibration, threads=threads, crop=crop, workdir=workdir)
    from ipex_resnet.errors import ConfigError

    raise ConfigError(f"unknown INT8 peer {name!r}; choose one of {', '.join(INT8_PEERS)}")


__all__ = ["INT8_PEERS", "onnxruntime_int8", "openvino_int8", "prepare"]
