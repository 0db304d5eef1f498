"""The engine interface: one small class per engine, registered by a decorator.

An engine turns an FP32 ``nn.Module`` into a runner (NCHW float32 batch -> float32 logits) and
saves/loads the compiled artifact that makes the next start fast. Every engine module:

* declares ``@register class XEngine(Engine)`` with ``name``;
* ``status()`` -> ``(available, reason or install hint)``: cheap, imports nothing heavy;
* ``precisions(cpu)`` -> the precisions it can run on this CPU (``native`` ones first);
* ``build(module, plan, example, out_dir, calibration=None)`` -> writes its artifact files into
  ``out_dir`` (a fresh private directory the cache renames into place atomically);
* ``load(out_dir, plan)`` -> a :data:`Runner` from the files ``build`` wrote.

Runners take and return numpy arrays (float32, NCHW in, NxC logits out). Torch engines also accept
tensors. Lean engines (OpenVINO, ONNX Runtime) import neither torch nor torchvision in ``load``.

Artifact files (inside ``out_dir``), by engine:

=============  ==========================================================
inductor       ``model.pt2`` (AOTInductor package from ``torch.export``)
ipex           ``model.pt`` (frozen TorchScript; IPEX is imported before loading)
openvino       ``model.xml`` + ``model.bin`` (OpenVINO IR) and ``ov_cache/``
onnxruntime    ``model.onnx`` (optimized by ORT for this CPU)
eager          ``weights.pt`` (state dict; loaded with ``weights_only=True``)
=============  ==========================================================

The cache (``ipex_resnet.cache``) writes ``meta.json`` beside them: the key, the preset (sizes,
interpolation, mean/std), the categories, and for INT8 the accuracy report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Runner = Callable[[Any], Any]  # np.ndarray (or torch.Tensor for torch engines) -> same kind of logits

PRECISIONS = ("fp32", "bf16", "int8")


class Engine:
    name: str = "?"
    #: True when load() and the runner need torch at run time.
    needs_torch: bool = True
    #: pip extra that installs it, for hints
    extra: str | None = None

    def status(self) -> tuple[bool, str]:
        raise NotImplementedError

    def precisions(self, cpu) -> tuple[str, ...]:
        """Precisions this engine can run here (may include emulated ones; the policy warns)."""
        return ("fp32", "bf16")

    def build(self, module, plan, example, out_dir: Path,
              calibration: Sequence[Any] | Iterable[Any] | None = None) -> None:
        raise NotImplementedError

    def load(self, out_dir: Path, plan) -> Runner:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<engine {self.name}>"
