"""From a plan to a runner through the artifact cache: what an entry holds beyond the engine's files
(the model's categories and preprocessing preset, so a warm start needs neither torch nor
torchvision), and how an entry is built when it is missing."""

from __future__ import annotations

import dataclasses
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from ipex_resnet import engines
from ipex_resnet.core import int8
from ipex_resnet.core.cache import ArtifactCache, entry_name, root
from ipex_resnet.core.classifier import Classifier
from ipex_resnet.core.keys import artifact_key, weights_id
from ipex_resnet.core.runtime import set_threads, warm_up
from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging import DEFAULT_MAX_PIXELS, Preprocessor, PresetSpec
from ipex_resnet.models.spec import is_import_path


@dataclasses.dataclass(frozen=True)
class Request:
    """What load() was asked for, apart from the plan."""

    model: Any  # a torchvision model name, or an nn.Module
    weights: Any
    cpu: Any
    categories: list[str] | None = None
    transforms: Any = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    warmup_batch: int = 1
    calibration: Any = None
    accept_accuracy: bool = False
    accuracy_gate: Any = None
    labels: Any = None  # labelled images (labels.csv folder or a folder per class): INT8's gate
    model_id: str | None = None  # the version a user's model declares (models.spec.check_model_id)

    @property
    def name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__


def preset_dict(transforms) -> dict | None:
    """The preset as plain data (:class:`~ipex_resnet.imaging.PresetSpec`), or None for a custom transform
    (which the user passes again: only torchvision can run it)."""
    try:
        return PresetSpec.from_torchvision(transforms).to_dict()
    except ConfigError:
        return None


def crop_of(preset: dict | None) -> int:
    return PresetSpec.from_dict(preset).crop_hw[0] if preset else 224


def preprocessor(meta: dict | None, transforms, max_pixels: int):
    """The weights' preprocessing: from the user's transforms, else from the entry's preset (no torch)."""
    if transforms is not None or not (meta or {}).get("preset"):
        return Preprocessor.from_preset(transforms, max_pixels=max_pixels)
    assert meta is not None  # it has a preset
    return Preprocessor(PresetSpec.from_dict(meta["preset"]), max_pixels=max_pixels)


def transforms_id(transforms) -> str | None:
    return None if transforms is None else hashlib.sha256(repr(transforms).encode()).hexdigest()[:16]


def _resolve(req: Request):
    from ipex_resnet.models.resolve import resolve  # torch and torchvision: only when building

    return resolve(req.model, req.weights, categories=req.categories, transforms=req.transforms)


def identify(req: Request):
    """``(weights id, resolved model or None)``. A model named by import path is built to be identified
    (what its callable returns, with any checkpoint applied, is hashed tensor by tensor, with the
    source of its class); the built model is handed on so it is not built twice. A declared
    ``model_id`` identifies it unbuilt: it is built only when its artifact is missing."""
    if req.model_id is not None:
        return weights_id(req.model, req.weights, req.model_id), None
    if is_import_path(req.model):
        loaded = _resolve(req)
        return weights_id(loaded.module, None), loaded
    return weights_id(req.model, req.weights), None


def make_classifier(plan, req: Request, use_cache: bool) -> Classifier:
    """The classifier for ``plan``: from the artifact cache (built on a miss), or built in memory."""
    import numpy as np

    engine = engines.get(plan.backend)
    set_threads(plan)
    if not (use_cache and engine.cacheable):
        return build_uncached(plan, req)
    runner, meta, hit, entry = cached(plan, req)
    plan = dataclasses.replace(plan, model=meta["model_name"], weights=meta["weights_label"])
    if plan.precision == "int8":
        plan = dataclasses.replace(
            plan, reasons={**plan.reasons, "precision": f"{plan.reasons['precision']}; {int8.describe(meta)}"}
        )
    crop = crop_of(meta["preset"])
    warm_up(runner, engine, np.zeros((req.warmup_batch, 3, crop, crop), dtype=np.float32))
    return Classifier(
        runner,
        plan,
        model_name=meta["model_name"],
        categories=req.categories or meta["categories"],
        preprocessor=preprocessor(meta, req.transforms, req.max_pixels),
        cpu=req.cpu,
        random_init=meta.get("random_init", False),
        artifact={
            "entry": str(entry),
            "hit": hit,
            "info": meta.get("info", {}),
            "accuracy": meta.get("accuracy"),
            "accuracy_labelled": meta.get("accuracy_labelled"),
        },
    )


def cached(plan, req: Request):
    """``(runner, meta, hit, entry_dir)`` from the cache, building the entry when it is missing."""
    import numpy as np

    engine = engines.get(plan.backend)
    wid, resolved = identify(req)
    key = artifact_key(req.name, wid, plan, None, transforms_id(req.transforms))
    base_key, cal_set, labelled = key, None, None
    if plan.precision == "int8":
        cal_set = int8.calibration_set(req.calibration)
        labelled = int8.labelled_set(req.labels, req.categories) if cal_set is not None else None
        key = int8.full_key(base_key, cal_set, labelled[1] if labelled else None)

    def build(tmp):
        loaded = resolved or _resolve(req)
        preset = preset_dict(loaded.transforms)
        crop = crop_of(preset)
        example = np.random.default_rng(0).standard_normal((1, 3, crop, crop), dtype=np.float32)
        if plan.precision == "int8":
            extras = int8.build(engine, loaded, plan, example, tmp, cal_set, labelled, req.accuracy_gate)
        else:
            extras = {"info": engine.build(loaded.module, plan, example, tmp) or {}}
        return {
            "model_name": loaded.name,
            "weights_label": loaded.weights,
            "categories": loaded.categories,
            "random_init": loaded.random_init,
            "preset": preset,
            **extras,
        }

    runner, meta, hit = ArtifactCache().get_or_build(key, build, lambda entry, meta: engine.open(entry, plan))
    if plan.precision == "int8":
        int8.remember(base_key, key)
        int8.check(meta, accept=req.accept_accuracy, gate=req.accuracy_gate)
    return runner, meta, hit, root() / entry_name(key)


def prepare_uncached(engine, module, plan, example, calibration=None):
    """Streams built in memory (a throwaway directory), INT8 from ``calibration`` batches."""
    if plan.precision != "int8":
        return engine.prepare(module, plan, example)
    with tempfile.TemporaryDirectory(prefix=f"ipex_resnet_{engine.name}_int8_") as tmp:
        int8.quantize_into(engine, module, plan, example, Path(tmp), list(calibration or []))
        return engine.open(Path(tmp), plan)


def build_uncached(plan, req: Request) -> Classifier:
    import numpy as np

    if plan.precision == "int8":
        raise ConfigError(
            "int8 needs the artifact cache (its accuracy report lives there): "
            "do not pass cache=False / IPEX_RESNET_NO_CACHE with precision='int8'"
        )
    engine = engines.get(plan.backend)
    loaded = _resolve(req)
    crop = crop_of(preset_dict(loaded.transforms))
    example = np.random.default_rng(0).standard_normal((req.warmup_batch, 3, crop, crop), dtype=np.float32)
    runner = prepare_uncached(engine, loaded.module, plan, example)
    warm_up(runner, engine, example)
    plan = dataclasses.replace(plan, model=loaded.name, weights=loaded.weights)
    return Classifier(
        runner,
        plan,
        model_name=loaded.name,
        categories=loaded.categories,
        preprocessor=preprocessor(None, loaded.transforms, req.max_pixels),
        cpu=req.cpu,
        random_init=loaded.random_init,
    )


__all__ = ["Request", "build_uncached", "prepare_uncached", "cached", "make_classifier", "preset_dict", "preprocessor"]
