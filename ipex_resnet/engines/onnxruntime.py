"""ONNX Runtime (CPU execution provider): the FP32 ONNX export, optimized once by ORT for this CPU
(all graph optimizations, saved as ``model.onnx``), loaded later without optimizing again. FP32 and
INT8 (QDQ); ORT's CPU provider has no BF16 convolutions. Loading imports no torch."""

from __future__ import annotations

from pathlib import Path

from ipex_resnet.engines import register
from ipex_resnet.engines.base import Engine, numpy_runner
from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.util.deps import dist_version, installed

HINT = "pip install onnxruntime onnx onnxscript (or pip install 'ipex_resnet[onnxruntime]')"
ARTIFACT = "model.onnx"
RAW = "model.raw.onnx"  # before ORT optimized it for this CPU


def session(path: Path, threads: int, *, optimize_to: Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # the "hardware specific optimizations" notice: the key holds the CPU
    if optimize_to is not None:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(optimize_to)
    else:
        # already optimized for this CPU when it was built (the cache key holds the CPU and versions)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@register
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    needs_torch = False
    extra = "onnxruntime"

    def status(self) -> tuple[bool, str]:
        if not installed("onnxruntime"):
            return False, f"onnxruntime is not installed; {HINT}"
        return True, f"ONNX Runtime {dist_version('onnxruntime') or '?'} (CPU execution provider)"

    def precisions(self, cpu) -> tuple[str, ...]:
        return ("fp32", "int8")

    def plan_options(self, precision, native_bf16):
        return {"graph_optimization": "all, saved"}, []

    def describe(self) -> str:
        return "ONNX Runtime CPU provider, graph optimized once for this CPU"

    def build(self, module, plan, example, out_dir) -> dict:
        from ipex_resnet.export.onnx import export_onnx

        if not installed("onnxruntime"):
            raise BackendUnavailable(f"onnxruntime is not installed; {HINT}")
        export_onnx(module, Path(out_dir) / RAW, int(example.shape[-1]))
        return self.finish(out_dir, plan, {"artifact": ARTIFACT})

    def finish(self, out_dir, plan, info: dict) -> dict:
        """Optimize the graph at ``model.onnx`` (FP32 export or QDQ INT8) for this CPU, in place."""
        out_dir = Path(out_dir)
        raw = out_dir / RAW
        if not raw.exists():  # the INT8 flow wrote model.onnx
            (out_dir / ARTIFACT).rename(raw)
        session(raw, plan.threads, optimize_to=out_dir / ARTIFACT)
        raw.unlink()
        for extra in out_dir.glob("*.data"):  # external-data side files of the raw export
            if not extra.name.startswith("model.onnx"):
                extra.unlink()
        return info

    def load(self, out_dir, plan):
        sess = session(Path(out_dir) / ARTIFACT, plan.threads)
        name = sess.get_inputs()[0].name

        def run(x):
            return sess.run(None, {name: x})[0]

        return numpy_runner(run)
