"""Peer runtimes on the same model and inputs: ONNX Runtime (CPU) and OpenVINO (CPU).

Each peer is optional. :func:`availability` says which can run (with an install hint when not);
:func:`prepare` exports the model once with ``torch.onnx.export`` and returns a runner with the
same contract as a backend runner: NCHW float32 tensor in, float32 logits tensor out.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import IpexResnetError

PEERS = ("onnxruntime", "openvino")
INSTALL_HINTS = {
    "onnx": "pip install onnx onnxscript (or pip install 'ipex_resnet[peers]')",
    "onnxruntime": "pip install onnxruntime (or pip install 'ipex_resnet[peers]')",
    "openvino": "pip install openvino (or pip install 'ipex_resnet[peers]')",
}


class PeerUnavailable(IpexResnetError):
    """A peer runtime cannot run here; the message carries the install hint."""


def _missing(module: str, dist: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed; {INSTALL_HINTS[dist]}"
    return None


def status(name: str) -> tuple[bool, str]:
    if name not in PEERS:
        return False, f"unknown peer {name!r}: choose one of {', '.join(PEERS)}"
    why = _missing("onnx", "onnx") or _missing(name, name)
    if why:
        return False, why
    import importlib.metadata

    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return True, f"{name} {version} (CPU)"


def availability() -> dict[str, tuple[bool, str]]:
    return {name: status(name) for name in PEERS}


def export_onnx(module: torch.nn.Module, path: str | os.PathLike, crop: int = 224) -> Path:
    """Export ``module`` (FP32, eval) to ONNX with a dynamic batch dimension."""
    why = _missing("onnx", "onnx")
    if why:
        raise PeerUnavailable(why)
    path = Path(path)
    module = module.eval()
    example = (torch.randn(1, 3, crop, crop),)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            # The TorchScript exporter: quiet, fast, and still shipped by every torch we support.
            torch.onnx.export(module, example, str(path), input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17, dynamo=False)
        except Exception:  # noqa: BLE001 - fall back to the dynamo exporter on torches without it
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(module, example, str(path), input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: batch},), dynamo=True, verbose=False)
    if not path.is_file():
        raise PeerUnavailable(f"torch.onnx.export wrote nothing at {path}")
    return path


def onnxruntime_runner(onnx_path: str | os.PathLike, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    why = _missing("onnxruntime", "onnxruntime")
    if why:
        raise PeerUnavailable(why)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        out = sess.run(None, {name: x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)

    return run


def openvino_runner(onnx_path: str | os.PathLike, threads: int, precision: str = "fp32",
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
    why = _missing("openvino", "openvino")
    if why:
        raise PeerUnavailable(why)
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    try:
        compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
    except Exception as exc:  # noqa: BLE001 - e.g. bf16 hint on a CPU without BF16
        raise PeerUnavailable(f"openvino could not compile the model for CPU ({precision}): "
                              f"{str(exc).strip().splitlines()[0][:200]}") from None
    request = compiled.create_infer_request()

    def run(x: torch.Tensor) -> torch.Tensor:
        request.infer({0: x.detach().float().contiguous().numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run


def prepare(name: str, module: torch.nn.Module, threads: int, precision: str = "fp32", *,
            onnx_path: str | os.PathLike | None = None, crop: int = 224) -> Callable[[torch.Tensor], torch.Tensor]:
    """A runner for peer ``name``; exports to ONNX first unless ``onnx_path`` is given."""
    ok, why = status(name)
    if not ok:
        raise PeerUnavailable(why)
    if name == "onnxruntime" and precision != "fp32":
        raise PeerUnavailable("onnxruntime (CPU) runs this model in fp32 only")
    if onnx_path is None:
        onnx_path = Path(tempfile.mkdtemp(prefix="ipex_resnet_onnx_")) / "model.onnx"
        export_onnx(module, onnx_path, crop)
    if name == "onnxruntime":
        return onnxruntime_runner(onnx_path, threads)
    return openvino_runner(onnx_path, threads, precision)


__all__ = ["PEERS", "PeerUnavailable", "availability", "export_onnx", "onnxruntime_runner",
           "openvino_runner", "prepare", "status"]
