"""The classifier: images -> tensor -> backend -> top-k labels."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from . import backends
from .cpu import CPUInfo, probe
from .errors import ConfigError, ImageError
from .models import LoadedModel, resolve
from .policy import Plan, make_plan
from .imaging import DEFAULT_MAX_PIXELS, Preprocessor, describe_source


class PlanWarning(UserWarning):
    """An explicit choice had to be changed, or will be slow (e.g. emulated BF16)."""


class Classifier:
    """An optimized image classifier. Build it with :func:`ipex_resnet.load`."""

    def __init__(self, runner: backends.Runner, plan: Plan, loaded: LoadedModel,
                 preprocessor: Preprocessor, cpu: CPUInfo):
        self._runner = runner
        self.plan = plan
        self.cpu = cpu
        self.model_name = loaded.name
        self.categories = loaded.categories
        self.random_init = loaded.random_init
        self.preprocessor = preprocessor

    def __repr__(self) -> str:
        return f"Classifier({self.model_name}, backend={self.plan.backend}, precision={self.plan.precision})"

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 logits for a preprocessed NCHW float tensor."""
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ConfigError(f"expected a preprocessed Nx3xHxW float tensor, got {shape}; "
                              "use predict() for raw images")
        if not batch.is_floating_point():
            raise ConfigError(f"expected a float tensor (normalized), got {batch.dtype}")
        return self._runner(batch.float())

    def preprocess(self, image: object, *, name: str | None = None) -> torch.Tensor:
        """One image (path, bytes, file object, PIL, numpy, tensor) -> normalized 3xHxW tensor."""
        return torch.from_numpy(self.preprocessor(image, name=name))

    def topk(self, logits: torch.Tensor, k: int = 5) -> list[list[dict]]:
        if k < 1:
            raise ConfigError(f"topk must be at least 1, got {k}")
        probs = torch.softmax(logits.float(), dim=1)
        scores, indices = probs.topk(min(k, probs.shape[1]), dim=1)
        out = []
        for row_s, row_i in zip(scores.tolist(), indices.tolist()):
            out.append([{"label": self.label(i), "index": i, "score": s} for s, i in zip(row_s, row_i)])
        return out

    def label(self, index: int) -> str:
        return self.categories[index] if 0 <= index < len(self.categories) else f"class_{index}"

    def predict(self, images: Sequence[object] | object, topk: int = 5, batch_size: int = 32) -> list[list[dict]]:
        """Top-k ``{"label", "index", "score"}`` per image; scores are softmax probabilities.

        ``images`` is a list (a single image is treated as a list of one). Images of mixed sizes are
        fine. A bad image raises :class:`ImageError` naming it; to classify the rest, preprocess each
        with :meth:`preprocess` and call :meth:`predict_tensors`.
        """
        if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence):
            images = [images]
        tensors = [self.preprocess(img, name=describe_source(img, i)) for i, img in enumerate(images)]
        return self.predict_tensors(tensors, topk=topk, batch_size=batch_size)

    def predict_tensors(self, tensors: Sequence[torch.Tensor | np.ndarray], topk: int = 5,
                        batch_size: int = 32) -> list[list[dict]]:
        """Top-k for preprocessed 3xHxW tensors or float32 numpy arrays (what the preprocessor returns)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if topk < 1:
            raise ConfigError(f"topk must be at least 1, got {topk}")
        out: list[list[dict]] = []
        for start in range(0, len(tensors), batch_size):
            chunk = list(tensors[start:start + batch_size])
            if all(isinstance(t, np.ndarray) for t in chunk):
                batch = torch.from_numpy(np.stack(chunk))
            else:
                batch = torch.stack([torch.as_tensor(t) for t in chunk])
            out.extend(self.topk(self(batch), topk))
        return out


def plan_for(cpu: CPUInfo | None = None, backend: str | None = "auto", precision: str | None = "auto",
             threads: int | None = None) -> Plan:
    """The plan for this machine (or an injected CPU), given what backends can run here."""
    cpu = cpu or probe(check_ipex=False)  # IPEX's own ISA view is for `probe`; importing it costs seconds
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return make_plan(cpu, backend, precision, threads, availability=backends.availability(), affinity=affinity)


def optimize(module: torch.nn.Module, backend: str | None = "auto", precision: str | None = "auto",
             threads: int | None = None, *, cpu: CPUInfo | None = None, example: torch.Tensor | None = None,
             plan: Plan | None = None) -> tuple[backends.Runner, Plan]:
    """Optimize any image classifier for this CPU: returns ``(runner, plan)``, where ``runner`` maps a
    float NCHW batch to float32 logits, already warmed up on ``example`` (default 1x3x224x224)."""
    plan = plan or plan_for(cpu, backend, precision, threads)
    for w in plan.warnings:
        warnings.warn(w, PlanWarning, stacklevel=3)
    torch.set_num_threads(plan.threads)
    example = torch.randn(1, 3, 224, 224) if example is None else example
    return backends.prepare(module, plan, example), plan


def load(model: str | torch.nn.Module = "resnet18", weights: str | os.PathLike | None = "DEFAULT",
         backend: str | None = "auto", precision: str | None = "auto", threads: int | None = None, *,
         categories: list[str] | None = None, transforms: torch.nn.Module | None = None,
         cpu: CPUInfo | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
         warmup_batch: int = 1) -> Classifier:
    """Probe the CPU, plan, load the model and weights, optimize, warm up.

    ``weights``: ``"DEFAULT"``, an enum name such as ``"IMAGENET1K_V1"``, a checkpoint path, or
    ``"none"`` (random init). Settings resolve as argument -> env (``IPEX_RESNET_BACKEND``,
    ``IPEX_RESNET_PRECISION``, ``IPEX_RESNET_THREADS``) -> automatic choice. Sets torch's
    intra-op thread count for the process to ``plan.threads``.
    """
    cpu = cpu or probe(check_ipex=False)
    plan = plan_for(cpu, backend, precision, threads)  # bad options fail before any weights are fetched
    loaded = resolve(model, weights, categories=categories, transforms=transforms)
    plan = dataclasses.replace(plan, model=loaded.name, weights=loaded.weights)
    pre = Preprocessor.from_preset(loaded.transforms, max_pixels=max_pixels)  # PresetSpec.from_torchvision
    example = torch.randn(warmup_batch, 3, pre.crop_size, pre.crop_size)
    runner, plan = optimize(loaded.module, plan=plan, example=example)
    return Classifier(runner, plan, loaded, pre, cpu)


__all__ = ["Classifier", "ImageError", "PlanWarning", "load", "optimize", "plan_for"]
