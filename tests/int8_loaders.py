"""Test-only loaders for the INT8 artifacts (the engines' own loaders read the same files).

Each returns ``runner(np float32 NCHW) -> np float32 logits``. Kept out of the package: the
engines (ipex_resnet.engines.*) own loading in the product.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load(engine: str, out_dir: Path, threads: int = 1):
    out_dir = Path(out_dir)
    if engine == "inductor":
        import torch
        from torch._inductor.package import load_package

        from ipex_resnet.quantization.inductor import ARTIFACT, BATCH1

        any_batch = torch._inductor.aoti_load_package(str(out_dir / ARTIFACT))
        one = load_package(str(out_dir / ARTIFACT), BATCH1)

        def run(x):
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            with torch.no_grad():
                return (one if t.shape[0] == 1 else any_batch)(t).float().numpy()

        return run
    if engine == "ipex":
        import intel_extension_for_pytorch  # noqa: F401 - registers IPEX's int8 ops for TorchScript
        import torch

        module = torch.jit.load(str(out_dir / "model.pt"))

        def run(x):
            with torch.no_grad():
                return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).float().numpy()

        return run
    if engine == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(out_dir / "model.xml"), "CPU", {"INFERENCE_NUM_THREADS": threads})
        request = compiled.create_infer_request()

        def run(x):
            request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return request.get_output_tensor(0).data.copy()

        return run
    if engine == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(out_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    raise ValueError(engine)
