"""The weights' preprocessing preset as plain data: no torch needed to store, load or apply it.

A torchvision ``ImageClassification`` preset (what ``Weights.transforms()`` returns) is: resize the
short side to ``resize_size`` with ``interpolation`` (antialiased), center-crop ``crop_size``, scale
to [0, 1], normalize with ``mean`` and ``std``. :class:`PresetSpec` holds those numbers, so the fast
path (PIL + numpy) can apply them and an exported artifact can carry them in its ``meta.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ipex_resnet.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")


def _ints(value: Any, field: str) -> tuple[int, ...]:
    seq = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        out = tuple(int(v) for v in seq)
    except (TypeError, ValueError):
        raise ConfigError(f"preset {field} must be an int or a list of 1-2 ints, got {value!r}") from None
    if len(out) not in (1, 2) or any(v < 1 for v in out):
        raise ConfigError(f"preset {field} must be an int or a list of 1-2 positive ints, got {value!r}")
    return out


@dataclasses.dataclass(frozen=True)
class PresetSpec:
    """Resize (short side, or ``(h, w)``) -> center crop -> scale to [0, 1] -> normalize."""

    resize_size: tuple[int, ...] = (256,)
    crop_size: tuple[int, ...] = (224,)
    interpolation: str = "bilinear"
    antialias: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        object.__setattr__(self, "resize_size", _ints(self.resize_size, "resize_size"))
        object.__setattr__(self, "crop_size", _ints(self.crop_size, "crop_size"))
        interp = str(getattr(self.interpolation, "value", self.interpolation)).lower()
        if interp not in INTERPOLATIONS:
            raise ConfigError(
                f"preset interpolation {self.interpolation!r} unknown; one of {', '.join(INTERPOLATIONS)}"
            )
        object.__setattr__(self, "interpolation", interp)
        object.__setattr__(self, "antialias", True if self.antialias is None else bool(self.antialias))
        for field in ("mean", "std"):
            raw = getattr(self, field)
            raw = [raw] * 3 if isinstance(raw, (int, float)) else raw  # one value: the same for R, G and B
            try:
                vals = tuple(float(v) for v in raw)
            except (TypeError, ValueError):
                raise ConfigError(f"preset {field} must be a number or 3 numbers (RGB), got {raw!r}") from None
            if len(vals) != 3:
                raise ConfigError(f"preset {field} must have 3 values (RGB), got {vals}")
            object.__setattr__(self, field, vals)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"preset std must be positive, got {self.std}")

    @property
    def crop_hw(self) -> tuple[int, int]:
        c = self.crop_size
        return (c[0], c[0]) if len(c) == 1 else (c[0], c[1])

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(w, h)`` after the preset's resize: torchvision's rule (short side, int() of the long side)."""
        if len(self.resize_size) == 2:
            return self.resize_size[1], self.resize_size[0]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize_size[0], int(self.resize_size[0] * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    @classmethod
    def from_torchvision(cls, preset: Any) -> PresetSpec:
        """Read the numbers of a torchvision ``ImageClassification`` preset (imports nothing)."""
        missing = [a for a in ("resize_size", "crop_size", "mean", "std") if not hasattr(preset, a)]
        if missing:
            raise ConfigError(
                f"{type(preset).__name__} is not a torchvision ImageClassification preset "
                f"(no {', '.join(missing)}); only the exact preprocessing path can run it"
            )
        return cls(
            resize_size=preset.resize_size,
            crop_size=preset.crop_size,
            interpolation=getattr(preset, "interpolation", "bilinear"),
            antialias=getattr(preset, "antialias", True),
            mean=preset.mean,
            std=preset.std,
        )

    def to_torchvision(self):
        """The equivalent torchvision preset (imports torchvision)."""
        from ipex_resnet.util.torchvision_import import import_torchvision

        import_torchvision()
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms._presets import ImageClassification

        if len(self.resize_size) != 1 or len(self.crop_size) != 1:
            raise ConfigError("torchvision's ImageClassification takes a single resize and crop size")
        return ImageClassification(
            crop_size=self.crop_size[0],
            resize_size=self.resize_size[0],
            mean=self.mean,
            std=self.std,
            interpolation=InterpolationMode(self.interpolation),
            antialias=self.antialias,
        )

    def to_dict(self) -> dict:
        return {
            "resize_size": list(self.resize_size),
            "crop_size": list(self.crop_size),
            "interpolation": self.interpolation,
            "antialias": self.antialias,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> PresetSpec:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def describe(self) -> str:
        resize = (
            f"short side to {self.resize_size[0]}"
            if len(self.resize_size) == 1
            else f"to {self.resize_size[0]}x{self.resize_size[1]} (HxW)"
        )
        h, w = self.crop_hw
        return (
            f"resize {resize} ({self.interpolation}{', antialiased' if self.antialias else ''}), "
            f"center crop {h}x{w}, scale to [0, 1], normalize mean={list(self.mean)} std={list(self.std)}"
        )
