"""OpenVINO (CPU plugin): the model as OpenVINO IR (``model.xml`` + ``model.bin``), compiled with the
plan's thread count and precision hint; OpenVINO's own compiled-blob cache lives in ``ov_cache/``
beside the IR so the next start skips the graph compilation too. Loading imports no torch."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ipex_resnet.engines import register
from ipex_resnet.engines.base import Engine, numpy_runner
from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.util.deps import dist_version, installed

HINT = "pip install openvino onnx onnxscript (or pip install 'ipex_resnet[openvino]')"
XML = "model.xml"


def compile_config(threads: int, precision: str, native_bf16: bool = False, streams: int = 1) -> dict:
    """The CPU plugin settings: ``threads`` in all, split over ``streams`` (one: the latency hint; more:
    the throughput hint with that many streams, one request each). FP32 is asked for explicitly: the
    plugin's default on BF16-capable CPUs is BF16."""
    bf16 = precision == "bf16" or (precision == "int8" and native_bf16)  # int8: the unquantized ops
    streams = max(1, int(streams))
    return {
        "INFERENCE_NUM_THREADS": int(threads),
        "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
        **({} if streams == 1 else {"NUM_STREAMS": streams}),
        "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
        # The plugin pins its threads to the first cores of the process's CPU mask, as if it owned
        # them: two 1-thread processes (Ray actors) then share one core, each at about half speed.
        # Pin only when the threads cover the whole mask (one process, or a worker that has been
        # given its own cores); otherwise leave placement to the OS.
        "ENABLE_CPU_PINNING": int(threads) >= _mask_size(),
    }


def _mask_size() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def compile_model(
    xml: Path, threads: int, precision: str, cache_dir: Path | None = None, native_bf16: bool = False, streams: int = 1
):
    import openvino as ov

    core = ov.Core()
    config = compile_config(threads, precision, native_bf16, streams)
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    try:
        compiled = core.compile_model(core.read_model(str(xml)), "CPU", config)
    except Exception as exc:
        raise BackendUnavailable(
            f"openvino could not compile the model for CPU ({precision}): {str(exc).strip().splitlines()[0][:200]}"
        ) from None
    return compiled


_BRIDGE = threading.Lock()
_bridge_ready = False


def _prime_numpy_bridge() -> None:
    """Use OpenVINO's numpy bridge once, in this thread, before any stream does. Its bindings set the
    bridge up on first use in a function-local static whose initializer lets go of the GIL: two stream
    threads reading their first output at once deadlock (one holds the GIL and waits for the static, the
    other holds the static and waits for the GIL; seen with 2 streams, openvino 2026.4)."""
    global _bridge_ready
    with _BRIDGE:
        if not _bridge_ready:
            import numpy as np
            import openvino as ov

            ov.Tensor(np.zeros((1,), np.float32)).data.copy()
            _bridge_ready = True


def request_runner(compiled):
    """A runner over one new ``InferRequest`` of ``compiled``: one caller at a time (OpenVINO's rule)."""
    _prime_numpy_bridge()
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return run


def compiled_runner(xml: Path, threads: int, precision: str, cache_dir: Path | None = None, native_bf16: bool = False):
    """One request of a model compiled for one stream (peers and the INT8 flows use it)."""
    return request_runner(compile_model(xml, threads, precision, cache_dir, native_bf16))


@register
class OpenVINOEngine(Engine):
    name = "openvino"
    needs_torch = False
    extra = "openvino"

    def status(self) -> tuple[bool, str]:
        if not installed("openvino"):
            return False, f"openvino is not installed; {HINT}"
        return True, f"OpenVINO {(dist_version('openvino') or '?').split('-')[0]} (CPU plugin)"

    def precisions(self, cpu) -> tuple[str, ...]:
        # OpenVINO's CPU plugin runs BF16 only where the CPU has it natively
        return ("fp32", "bf16", "int8") if cpu.has_native_bf16 else ("fp32", "int8")

    def plan_options(self, precision, native_bf16):
        return {"ir": "OpenVINO IR + compiled-blob cache"}, []

    def describe(self) -> str:
        return "OpenVINO IR on the CPU plugin (latency hint; throughput hint with streams)"

    def build(self, module, plan, example, out_dir) -> dict:
        out_dir = Path(out_dir)
        if not installed("openvino"):
            raise BackendUnavailable(f"openvino is not installed; {HINT}")
        import openvino as ov

        from ipex_resnet.export.onnx import export_onnx

        onnx = export_onnx(module, out_dir / "model.onnx", int(example.shape[-1]))
        # read_model, not convert_model: ovc splits a path string (or Path) on commas, and any
        # folder may hold one (the artifact cache's, from IPEX_RESNET_CACHE_DIR)
        ov.save_model(ov.Core().read_model(str(onnx)), str(out_dir / XML), compress_to_fp16=False)
        onnx.unlink()
        return self.finish(out_dir, plan, {"artifact": XML})

    def finish(self, out_dir, plan, info: dict) -> dict:
        """Compile the IR once now, so the blob is in the cache before the entry is published."""
        out_dir = Path(out_dir)
        compiled_runner(out_dir / XML, plan.threads, plan.precision, out_dir / "ov_cache", plan.native_bf16)
        return info

    def load(self, out_dir, plan):
        return self._compiled(out_dir, plan, 1)[1]

    def open(self, out_dir, plan):
        """One compiled model with ``plan.streams`` CPU streams (``plan.threads`` in all) and one
        ``InferRequest`` per stream."""
        streams = int(getattr(plan, "streams", 1) or 1)
        compiled, first = self._compiled(out_dir, plan, streams)
        runners = iter([first] + [numpy_runner(request_runner(compiled)) for _ in range(streams - 1)])
        return self.streams_of(lambda _plan: next(runners), plan)

    def _compiled(self, out_dir, plan, streams: int):
        out_dir = Path(out_dir)
        cache = out_dir / "ov_cache"
        compiled = compile_model(
            out_dir / XML, plan.threads, plan.precision, cache if cache.is_dir() else None, plan.native_bf16, streams
        )
        return compiled, numpy_runner(request_runner(compiled))
