"""The model spec every entry point shares (:class:`ModelSpec`): a torchvision name or an import path
``pkg.module:attr`` (an ``nn.Module`` or a callable returning one), its weights, its preprocessing preset
and its categories. Parsing here imports no torch; :func:`import_model` imports the user's code.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.preset import INTERPOLATIONS, PresetSpec
from ipex_resnet.models.weights import NO_WEIGHTS

_IDENT = r"[A-Za-z_]\w*"
IMPORT_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
PRESET_FIELDS = ("resize_size", "crop_size", "mean", "std", "interpolation")
MAX_CATEGORIES_BYTES = 16 * 2**20
MAX_MODEL_ID_CHARS = 200


def is_import_path(model: object) -> bool:
    return isinstance(model, str) and IMPORT_PATH.match(model) is not None


def import_model(path: str) -> Any:
    """The ``nn.Module`` that ``pkg.module:attr`` names, or that calling it returns."""
    import torch

    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the user's package in the working directory
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"model {path!r}: cannot import module {module_name!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"model {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise ConfigError(f"model {path!r} is a {type(obj).__name__}, not an nn.Module or a callable returning one")
    try:
        built = obj()
    except Exception as exc:
        raise ConfigError(f"model {path!r}: calling it failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(built, torch.nn.Module):
        raise ConfigError(f"model {path!r} returned a {type(built).__name__}, not an nn.Module")
    return built


def check_model_id(model: object, model_id: object) -> str | None:
    """``model_id`` when it may name ``model``'s version, else ConfigError. A model id is the user's
    promise that it changes whenever the model's code or its weights do: the artifact cache then
    trusts it instead of building the model to hash its weights (so a cached load never runs the
    user's code). Only a user's model takes one: a torchvision model is named by its name and weights."""
    if model_id is None:
        return None
    if isinstance(model, str) and not is_import_path(model):
        raise ConfigError(
            f"--model-id names a version of your own model (an import path or an nn.Module); "
            f"{model!r} is a torchvision model, named by its name and weights"
        )
    if not isinstance(model_id, str) or not model_id.strip():
        raise ConfigError(f"--model-id must be a non-empty string, got {model_id!r}")
    if len(model_id) > MAX_MODEL_ID_CHARS or not model_id.isprintable():
        raise ConfigError(f"--model-id must be at most {MAX_MODEL_ID_CHARS} printable characters, got {model_id!r:.80}")
    return model_id


def source_id(module: object) -> str:
    """A hash of the source file that defines ``module``'s class (its forward), so an edited model is
    another artifact even when its weights keep their shapes."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    try:
        h.update(Path(inspect.getsourcefile(type(module)) or "").read_bytes())
    except (OSError, TypeError):
        pass  # built-in or generated classes: their name is all there is
    return h.hexdigest()[:16]


def read_categories(path: str | os.PathLike) -> list[str]:
    """One category name per line (blank lines ignored)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CATEGORIES_BYTES:
            raise ConfigError(f"categories file {str(p)!r} is larger than {MAX_CATEGORIES_BYTES // 2**20} MB")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"categories file {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"categories file {str(p)!r} cannot be read as UTF-8 text: {exc}") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ConfigError(f"categories file {str(p)!r} has no names (one per line)")
    return names


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"{option} must be numbers separated by commas, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 3  # one value for every channel
    if len(vals) != 3:
        raise ConfigError(f"{option} needs 1 or 3 values (R,G,B), got {len(vals)}: {text!r}")
    return vals


def read_preset_json(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"preset file {str(p)!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"preset file {str(p)!r} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"preset file {str(p)!r} must hold an object with {', '.join(PRESET_FIELDS)}")
    unknown = sorted(set(doc) - set(PRESET_FIELDS) - {"antialias"})
    if unknown:
        raise ConfigError(
            f"preset file {str(p)!r}: unknown field(s) {', '.join(unknown)}; known: {', '.join(PRESET_FIELDS)}"
        )
    return doc


def preset_from_options(
    preset_file: str | os.PathLike | None = None,
    resize: int | None = None,
    crop: int | None = None,
    mean: str | None = None,
    std: str | None = None,
    interpolation: str | None = None,
) -> PresetSpec | None:
    """The preset the options describe: each option overrides the JSON file, which overrides
    ImageNet's defaults (resize 256, crop 224, ImageNet mean/std, bilinear). None when none is given."""
    fields: dict[str, Any] = read_preset_json(preset_file) if preset_file else {}
    if resize is not None:
        fields["resize_size"] = resize
    if crop is not None:
        fields["crop_size"] = crop
    if mean is not None:
        fields["mean"] = _floats(mean, "--mean")
    if std is not None:
        fields["std"] = _floats(std, "--std")
    if interpolation is not None:
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"--interpolation {interpolation!r} unknown; one of {', '.join(INTERPOLATIONS)}")
        fields["interpolation"] = interpolation
    for key in ("mean", "std"):
        if key in fields and isinstance(fields[key], (int, float)):
            fields[key] = (float(fields[key]),) * 3
    return PresetSpec(**fields) if fields else None


def as_preset(transforms: Any) -> Any:
    """``transforms`` as given to load(): a preset dict (the JSON form) becomes a :class:`PresetSpec`."""
    if isinstance(transforms, dict):
        unknown = sorted(set(transforms) - set(PRESET_FIELDS) - {"antialias"})
        if unknown:
            raise ConfigError(f"preset: unknown field(s) {', '.join(unknown)}; known: {', '.join(PRESET_FIELDS)}")
        return PresetSpec(**transforms)
    return transforms


@dataclass(frozen=True)
class ModelSpec:
    """What to load, as one hashable value (in the manner of timm's ``PretrainedCfg``): ``model`` (a
    torchvision name or an import path), ``weights`` (``none``: seeded random init; ``DEFAULT``, an enum
    name or a checkpoint path), ``preset`` (None: the weights' own) and ``categories`` (None: the
    weights' own) and ``model_id`` (a user's model only: the version it declares, see
    :func:`check_model_id`; None: its weights are hashed). The defaults are the benchmark's: resnet18
    with random weights."""

    model: str = "resnet18"
    weights: str = "none"
    preset: PresetSpec | None = None
    categories: tuple[str, ...] | None = None
    model_id: str | None = None

    def __post_init__(self) -> None:
        # hashable whatever it was given: a path as text, a preset dict as a PresetSpec, a list as a tuple
        object.__setattr__(self, "weights", "none" if self.weights is None else os.fspath(self.weights))
        object.__setattr__(self, "preset", as_preset(self.preset))
        if self.categories is not None:
            object.__setattr__(self, "categories", tuple(self.categories))
        check_model_id(self.model, self.model_id)

    @classmethod
    def from_options(
        cls,
        model: str = "resnet18",
        weights: str = "none",
        *,
        preset: str | os.PathLike | None = None,
        resize: int | None = None,
        crop: int | None = None,
        mean: str | None = None,
        std: str | None = None,
        interpolation: str | None = None,
        categories: str | os.PathLike | None = None,
        model_id: str | None = None,
    ) -> ModelSpec:
        """From command-line options: ``preset`` a preset JSON file (the others override its fields),
        ``categories`` a file of names; a bad one is a ConfigError."""
        names = read_categories(categories) if categories else None
        return cls(
            model,
            weights,
            preset_from_options(preset, resize, crop, mean, std, interpolation),
            tuple(names) if names else None,
            model_id,
        )

    @property
    def random_init(self) -> bool:
        return self.weights.lower() in NO_WEIGHTS

    @property
    def preset_dict(self) -> dict[str, Any] | None:
        """The preset as JSON data (None: the weights' own)."""
        return self.preset.to_dict() if self.preset else None

    def resolve_kwargs(self) -> dict[str, Any]:
        """``resolve()``'s arguments besides the model."""
        cats = list(self.categories) if self.categories else None
        return {"weights": self.weights, "transforms": self.preset, "categories": cats}

    def load_kwargs(self) -> dict[str, Any]:
        """``load()``'s arguments besides the model: :meth:`resolve_kwargs`, and ``model_id`` when one is declared."""
        kwargs = self.resolve_kwargs()
        return {**kwargs, "model_id": self.model_id} if self.model_id else kwargs

    def to_dict(self) -> dict[str, Any]:
        """As JSON data (e.g. a request to a child process); :meth:`from_dict` reads it back."""
        cats = list(self.categories) if self.categories else None
        d = {"model": self.model, "weights": self.weights, "preset": self.preset_dict, "categories": cats}
        return {**d, "model_id": self.model_id} if self.model_id else d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelSpec:
        preset, cats = d.get("preset"), d.get("categories")
        return cls(
            d.get("model") or "resnet18",
            d.get("weights") or "none",
            as_preset(dict(preset)) if preset else None,
            tuple(cats) if cats else None,
            d.get("model_id"),
        )

    def cli_args(self, directory: str | os.PathLike) -> list[str]:
        """As ``ipex-resnet`` options (``--model --weights [--preset FILE] [--categories FILE] [--model-id ID]``); the
        preset and the categories are written as files into ``directory``."""
        args = ["--model", self.model, "--weights", self.weights]
        if self.preset:
            path = Path(directory) / "preset.json"
            path.write_text(json.dumps(self.preset_dict))
            args += ["--preset", str(path)]
        if self.categories:
            path = Path(directory) / "categories.txt"
            path.write_text("\n".join(self.categories) + "\n", encoding="utf-8")
            args += ["--categories", str(path)]
        if self.model_id:
            args += ["--model-id", self.model_id]
        return args


__all__ = [
    "IMPORT_PATH",
    "ModelSpec",
    "as_preset",
    "check_model_id",
    "import_model",
    "is_import_path",
    "preset_from_options",
    "read_categories",
    "read_preset_json",
    "source_id",
]
