"""The engine interface: one small class per engine, registered by a decorator.

An engine turns an FP32 ``nn.Module`` into a runner (NCHW float32 batch -> float32 logits) and
saves/loads the compiled artifact that makes the next start fast. Every engine module:

* declares ``@register class XEngine(Engine)`` with ``name``;
* ``status()`` -> ``(available, reason or install hint)``: cheap, imports nothing heavy;
* ``precisions(cpu)`` -> the precisions it can run on this CPU (``native`` ones first);
* ``build(module, plan, example, out_dir)`` -> writes its FP32/BF16 artifact files into ``out_dir``
  (a fresh private directory the cache renames into place atomically);
* ``finish(out_dir, plan, info)`` -> completes an artifact written by ``build`` or by the engine's
  INT8 flow in :mod:`ipex_resnet.quantization` (graph optimization, a compiled blob); engines and
  quantization do not import each other: :mod:`ipex_resnet.core` runs one, then the other;
* ``load(out_dir, plan)`` -> a :data:`Runner` from the files ``build`` wrote, for one caller at a time
  with ``plan.threads`` threads;
* ``open(out_dir, plan)`` -> :class:`~ipex_resnet.engines.streams.Streams`: ``plan.streams`` runners that
  split ``plan.threads`` between them, safe to share between threads (the default loads ``plan.streams``
  runners with ``load``; OpenVINO compiles once with that many streams).

A plain runner is not safe to call from two threads at once (OpenVINO's request is busy; torch would
start an OpenMP team per caller): the classifier only ever holds :class:`Streams`.

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

The cache (``ipex_resnet.core.cache``) writes ``meta.json`` beside them: the key, the preset (sizes,
interpolation, mean/std), the categories, and for INT8 the accuracy report.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipex_resnet.engines.streams import Streams, split_threads

Runner = Callable[[Any], Any]  # np.ndarray (or torch.Tensor) NCHW float32 -> logits of the same kind

PRECISIONS = ("fp32", "bf16", "int8")


def is_torch_tensor(x: object) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def numpy_runner(fn: Callable[[Any], Any]) -> Runner:
    """Wrap ``fn(np.ndarray) -> np.ndarray``: a torch tensor in gives a torch tensor out."""
    import numpy as np

    def run(x):
        if is_torch_tensor(x):
            import torch

            return torch.from_numpy(fn(np.ascontiguousarray(x.detach().float().numpy())))
        return fn(np.ascontiguousarray(x, dtype=np.float32))

    return run


def torch_runner(fn: Callable[[Any], Any]) -> Runner:
    """Wrap ``fn(torch.Tensor) -> torch.Tensor``: a numpy array in gives a numpy array out."""
    import torch

    def run(x):
        if isinstance(x, torch.Tensor):
            return fn(x.float())
        return fn(torch.from_numpy(x).float()).numpy()

    return run


class Engine:
    """One way to run a classifier. Subclasses live one per module and register themselves."""

    name: str = "?"
    #: True when load() and the runner need torch at run time (False: the lean path).
    needs_torch: bool = True
    #: the pip extra that installs the engine's library, for hints
    extra: str | None = None
    #: True when build() writes an artifact worth caching (eager has none)
    cacheable: bool = True
    #: the layout the engine feeds its convolutions (recorded in the plan)
    memory_format: str = "channels_last"
    #: calls on the example batch before a runner is handed out
    warmup_iters: int = 2

    def status(self) -> tuple[bool, str]:
        raise NotImplementedError

    def precisions(self, cpu) -> tuple[str, ...]:
        """Precisions this engine can run on ``cpu`` (emulated BF16 included: the policy warns)."""
        return ("fp32", "bf16")

    def plan_options(self, precision: str, native_bf16: bool) -> tuple[dict, list[str]]:
        """Engine settings the plan records, and warnings when a setting had to change."""
        return {}, []

    def describe(self) -> str:
        """What the engine does, one line, for the plan."""
        return self.name

    def build(self, module, plan, example, out_dir: Path) -> dict:
        """Compile ``module`` for ``plan`` (FP32 or BF16) and write the artifact files into ``out_dir``."""
        raise NotImplementedError

    def finish(self, out_dir: Path, plan, info: dict) -> dict:
        """Complete the artifact in ``out_dir`` (after :meth:`build`, or after the INT8 flow wrote it)."""
        return info

    def load(self, out_dir: Path, plan) -> Runner:
        """A runner for one caller at a time from the files :meth:`build` wrote."""
        raise NotImplementedError

    def open(self, out_dir: Path, plan) -> Streams:
        """``plan.streams`` runners, each with its share of ``plan.threads``, shared safely by any caller."""
        return self.streams_of(lambda p: self.load(out_dir, p), plan)

    def streams_of(self, load_one: Callable[[Any], Runner], plan) -> Streams:
        """:class:`Streams` over ``load_one(plan with one stream's threads)``, called once per stream."""
        streams = int(getattr(plan, "streams", 1) or 1)
        per = split_threads(plan.threads, streams)
        one = (
            dataclasses.replace(plan, threads=per)
            if dataclasses.is_dataclass(plan) and not isinstance(plan, type)
            else plan
        )
        return Streams(
            [load_one(one) for _ in range(streams)],
            threads_per_stream=per,
            torch_threads=self.needs_torch,
            name=self.name,
        )

    def prepare(self, module, plan, example) -> Streams:
        """Build and open FP32/BF16 without the cache (a throwaway directory)."""
        with tempfile.TemporaryDirectory(prefix=f"ipex_resnet_{self.name}_") as tmp:
            # Runners keep what they need in memory (ORT/OpenVINO/AOTInductor read the files at load).
            self.build(module, plan, example, Path(tmp))
            return self.open(Path(tmp), plan)

    def __repr__(self) -> str:
        return f"<engine {self.name}>"
