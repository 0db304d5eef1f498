"""From a plan to a runner through the artifact cache: what an entry holds beyond the engine's files
(the model's categories and preprocessing preset, so a warm start needs neither torch nor
torchvision), and how an entry is built when it is missing."""

from __future__ import annotations

import hashlib
import os

from . import engines
from .cache import ArtifactCache
from .classifier import Classifier
from .errors import ConfigError


def preset_dict(transforms) -> dict:
    """The preset as plain data: sizes, interpolation, antialias, mean/std (torchvision's
    ``ImageClassification`` attributes)."""
    def first(v):
        return int(v[0] if isinstance(v, (list, tuple)) else v)

    interp = getattr(transforms, "interpolation", "bilinear")
    return {
        "crop_size": first(getattr(transforms, "crop_size", 224)),
        "resize_size": first(getattr(transforms, "resize_size", 256)),
        "interpolation": str(getattr(interp, "value", interp)),
        "antialias": bool(getattr(transforms, "antialias", True)),
        "mean": [float(x) for x in getattr(transforms, "mean", (0.485, 0.456, 0.406))],
        "std": [float(x) for x in getattr(transforms, "std", (0.229, 0.224, 0.225))],
    }


def preset_from_dict(d: dict):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    return ImageClassification(crop_size=d["crop_size"], resize_size=d["resize_size"], mean=tuple(d["mean"]),
                               std=tuple(d["std"]), interpolation=InterpolationMode(d["interpolation"]),
                               antialias=d["antialias"])


def preprocessor(meta: dict, transforms, max_pixels: int):
    from .preprocess import Preprocessor

    return Preprocessor(transforms if transforms is not None else preset_from_dict(meta["preset"]),
                        max_pixels=max_pixels)


def transforms_id(transforms) -> str | None:
    return None if transforms is None else hashlib.sha256(repr(transforms).encode()).hexdigest()[:16]


def _resolve(model, weights, categories, transforms):
    from .models import resolve

    return resolve(model, weights, categories=categories, transforms=transforms)


def cached(plan, model, weights, name, categories, transforms, calibration, accept_accuracy=False,
           accuracy_gate=None):
    """``(runner, meta, hit, entry_dir)`` from the cache, building the entry when it is missing."""
    import numpy as np

    from .loader import artifact_key, weights_id

    engine = engines.get(plan.backend)
    key = artifact_key(name, weights_id(model, weights), plan, None, transforms_id(transforms))
    base_key = key
    if plan.precision == "int8":
        from . import int8

        key = int8.full_key(base_key, calibration)

    def build(tmp):
        loaded = _resolve(model, weights, categories, transforms)
        preset = preset_dict(loaded.transforms)
        crop = preset["crop_size"]
        example = np.random.default_rng(0).standard_normal((1, 3, crop, crop), dtype=np.float32)
        extras = {}
        if plan.precision == "int8":
            from . import int8

            extras = int8.build(engine, loaded, plan, example, tmp, calibration)
        else:
            extras["info"] = engine.build(loaded.module, plan, example, tmp) or {}
        return {"model_name": loaded.name, "weights_label": loaded.weights, "categories": loaded.categories,
                "random_init": loaded.random_init, "preset": preset, **extras}

    def load(entry, meta):
        return engine.load(entry, plan)

    runner, meta, hit = ArtifactCache().get_or_build(key, build, load)
    if plan.precision == "int8":
        from . import int8

        int8.remember(base_key, key)
        int8.check(meta, accept=accept_accuracy, gate=accuracy_gate)
    from .cache import entry_name, root

    return runner, meta, hit, root() / entry_name(key)


def build_uncached(plan, model, weights, cpu, categories, transforms, max_pixels, warmup_batch, calibration):
    import dataclasses

    import numpy as np

    from .loader import warm_up

    engine = engines.get(plan.backend)
    loaded = _resolve(model, weights, categories, transforms)
    preset = preset_dict(loaded.transforms)
    crop = preset["crop_size"]
    example = np.random.default_rng(0).standard_normal((warmup_batch, 3, crop, crop), dtype=np.float32)
    if plan.precision == "int8":
        raise ConfigError("int8 needs the artifact cache (its accuracy report lives there): "
                          "do not pass cache=False / IPEX_RESNET_NO_CACHE with precision='int8'")
    runner = engine.prepare(loaded.module, plan, example)
    warm_up(runner, engine, example)
    plan = dataclasses.replace(plan, model=loaded.name, weights=loaded.weights)
    from .preprocess import Preprocessor

    return Classifier(runner, plan, model_name=loaded.name, categories=loaded.categories,
                      preprocessor=Preprocessor(loaded.transforms, max_pixels=max_pixels), cpu=cpu,
                      random_init=loaded.random_init)


__all__ = ["cached", "build_uncached", "preset_dict", "preprocessor"]
