"""Peer rows: each runtime used directly, the way its own documentation shows, with no tuning of
ours -- only the thread count (and the precision the row is about) is set, as for every row. They
run the same FP32 ONNX export (:func:`ipex_resnet.export.onnx.export_onnx`) on the same
inputs, so the report shows what ipex_resnet adds over calling the runtime yourself.

The set is pluggable: one :func:`register` call adds a row. The INT8 rows (OpenVINO + NNCF, ONNX
Runtime QDQ) are registered here and run :mod:`ipex_resnet.quantization.peers` when it is installed.
Runners take a float32 NCHW numpy batch (or a torch tensor) and return logits of the same kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipex_resnet.engines.base import numpy_runner
from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.util.deps import dist_version, installed


@dataclass
class PeerInput:
    """What a peer builds from: the FP32 module (a function: the FP32 rows never need torch), its ONNX
    export, the crop size, the thread count, and (INT8 rows only) preprocessed calibration batches."""

    module: Callable[[], Any]
    onnx_path: Path
    crop: int
    threads: int
    workdir: Path
    calibration: Callable[[], Sequence[Any]] | None = None


@dataclass(frozen=True)
class Peer:
    engine: str  # the runtime, named as the matching engine
    precision: str
    prepare: Callable[[PeerInput], Callable]  # -> numpy runner
    needs: tuple[str, ...]  # importable modules it requires
    hint: str  # how to install them
    describe: str = ""
    native: Callable[[Any], str | None] = field(default=lambda cpu: None)  # why it cannot run on cpu, or None

    @property
    def name(self) -> str:
        return f"{self.engine}/{self.precision}"

    def status(self, cpu=None) -> tuple[bool, str]:
        for mod in self.needs:
            if not installed(mod):
                return False, f"{mod} is not installed; {self.hint}"
        if cpu is not None:
            why = self.native(cpu)
            if why:
                return False, why
        version = dist_version(self.engine) or "?"
        return True, f"{self.engine} {version.split('-')[0]} (CPU){': ' + self.describe if self.describe else ''}"


REGISTRY: dict[str, Peer] = {}


def register(peer: Peer) -> Peer:
    """Add a peer row (``engine/precision``); registering the same row twice is an error."""
    if peer.name in REGISTRY:
        raise ValueError(f"peer {peer.name!r} is registered twice")
    REGISTRY[peer.name] = peer
    return peer


def rows() -> list[Peer]:
    return list(REGISTRY.values())


def engines_with_peers() -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.engine for p in REGISTRY.values()))


# ----------------------------------------------------------------------------------------------
# The FP32/BF16 peers
# ----------------------------------------------------------------------------------------------

ORT_HINT = "pip install onnxruntime onnx onnxscript (or pip install 'ipex_resnet[onnxruntime]')"
OV_HINT = "pip install openvino onnx onnxscript (or pip install 'ipex_resnet[openvino]')"
INT8_HINT = "the INT8 peers need ipex_resnet.quantization and nncf (pip install 'ipex_resnet[int8]')"


def _onnxruntime(src: PeerInput):
    """ORT's documented CPU session: ``InferenceSession(path, sess_options, providers=[CPU])``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(src.threads)
    sess = ort.InferenceSession(str(src.onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _openvino(precision: str):
    def prepare(src: PeerInput):
        """OpenVINO's documented flow: ``core.compile_model(model, "CPU", config)`` and a synchronous
        infer request; the precision hint is the row's precision."""
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": int(src.threads),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        }
        try:
            compiled = core.compile_model(str(src.onnx_path), "CPU", config)
        except Exception as exc:
            raise BackendUnavailable(
                f"openvino could not compile the model for CPU ({precision}): {str(exc).strip().splitlines()[0][:200]}"
            ) from None
        request = compiled.create_infer_request()

        def run(x):
            request.infer({0: x})
            return request.get_output_tensor(0).data.copy()

        return run

    return prepare


def _int8(engine: str):
    def prepare(src: PeerInput):
        from ipex_resnet.quantization import peers as qpeers

        return qpeers.prepare(
            engine,
            src.module(),
            src.calibration() if src.calibration else None,
            threads=src.threads,
            crop=src.crop,
            workdir=src.workdir,
        )

    return prepare


def _needs_native_bf16(cpu) -> str | None:
    return None if cpu.has_native_bf16 else "no native BF16 on this CPU (AVX512_BF16 / AMX-BF16)"


register(Peer("onnxruntime", "fp32", _onnxruntime, ("onnx", "onnxruntime"), ORT_HINT, "default CPU session"))
register(Peer("openvino", "fp32", _openvino("fp32"), ("onnx", "openvino"), OV_HINT, "compile_model, LATENCY hint"))
register(
    Peer(
        "openvino",
        "bf16",
        _openvino("bf16"),
        ("onnx", "openvino"),
        OV_HINT,
        "compile_model, bf16 hint",
        native=_needs_native_bf16,
    )
)
register(
    Peer(
        "openvino",
        "int8",
        _int8("openvino"),
        ("onnx", "openvino", "nncf", "ipex_resnet.quantization.peers"),
        INT8_HINT,
        "NNCF quantize, default settings",
    )
)
register(
    Peer(
        "onnxruntime",
        "int8",
        _int8("onnxruntime"),
        ("onnx", "onnxruntime", "ipex_resnet.quantization.peers"),
        INT8_HINT,
        "quantize_static QDQ, default session",
    )
)


def prepare(peer: Peer, src: PeerInput):
    """A runner for ``peer``; raises BackendUnavailable (with the install hint) when it cannot run."""
    ok, why = peer.status()
    if not ok:
        raise BackendUnavailable(why)
    return numpy_runner(peer.prepare(src))


__all__ = ["Peer", "PeerInput", "REGISTRY", "engines_with_peers", "prepare", "register", "rows"]
