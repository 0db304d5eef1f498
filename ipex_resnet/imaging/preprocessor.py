"""One input (path, bytes, file, PIL, numpy, tensor) -> the normalized 3xHxW float32 array the weights
expect. Two modes:

- ``fast`` (default): bounded decode with JPEG DCT-domain downscaling, resize of the crop window only,
  one multiply-add to normalize. PIL + numpy only (no torch import). Agreement with ``exact`` on real photos
  is in docs/input.md.
- ``exact``: the full-size decode and the torchvision preset itself, bit for bit (imports torch).

The default comes from ``IPEX_RESNET_PREPROCESS`` (``fast`` or ``exact``) when set.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from ipex_resnet.errors import ConfigError, ImageError
from ipex_resnet.imaging import fast
from ipex_resnet.imaging.decode import DEFAULT_MAX_PIXELS, decode, describe_source
from ipex_resnet.imaging.preset import PresetSpec

MODES = ("fast", "exact")
MODE_ENV = "IPEX_RESNET_PREPROCESS"
# The exact path builds the preset's full resized image: refuse one larger than this (a 100000x10
# strip would resize to 2.5 GP). The fast path never builds it and has no such limit.
DEFAULT_MAX_RESIZED_PIXELS = 16_000_000
# A JPEG is decoded at 1/2, 1/4 or 1/8 scale while its short side stays >= this x the preset's resize.
DRAFT_MARGIN = 2.0


def _is_tensor(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "ndim") and hasattr(x, "dtype")


def default_mode() -> str:
    mode = os.environ.get(MODE_ENV, "").strip().lower() or "fast"
    if mode not in MODES:
        raise ConfigError(f"{MODE_ENV}={mode!r} unknown; use fast or exact")
    return mode


class Preprocessor:
    """Turns one input into the normalized 3xHxW float32 numpy array the weights were trained on."""

    def __init__(
        self,
        spec: PresetSpec | None,
        *,
        mode: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_resized_pixels: int = DEFAULT_MAX_RESIZED_PIXELS,
        preset: object | None = None,
    ):
        mode = (mode or default_mode()).lower()
        if mode not in MODES:
            raise ConfigError(f"preprocessing mode {mode!r} unknown; use fast or exact")
        if spec is None and preset is None:
            raise ConfigError("Preprocessor needs a PresetSpec or a torchvision preset")
        if spec is None and mode == "fast":
            mode = "exact"  # a custom transform: only torchvision can run it
        if max_pixels < 1 or max_resized_pixels < 1:
            raise ConfigError("max_pixels and max_resized_pixels must be positive")
        self.spec, self.mode, self._preset = spec, mode, preset
        self.max_pixels, self.max_resized_pixels = max_pixels, max_resized_pixels
        self._normalize = fast.Normalizer(spec) if spec is not None else None

    @classmethod
    def from_preset(cls, preset: object, **kwargs) -> Preprocessor:
        """From a torchvision preset (``Weights.transforms()``); a custom transform runs in exact mode."""
        if isinstance(preset, PresetSpec):
            return cls(preset, **kwargs)  # the exact path builds torchvision's transform from it
        try:
            spec = PresetSpec.from_torchvision(preset)
        except ConfigError:
            spec = None
        return cls(spec, preset=preset, **kwargs)

    def with_mode(self, mode: str) -> Preprocessor:
        return Preprocessor(
            self.spec,
            mode=mode,
            max_pixels=self.max_pixels,
            max_resized_pixels=self.max_resized_pixels,
            preset=self._preset,
        )

    @property
    def preset(self):
        """The torchvision preset (built from the spec on first use; imports torchvision)."""
        if self._preset is None:
            try:
                self._preset = self.spec.to_torchvision()
            except ImportError as exc:
                raise ConfigError(
                    f"exact preprocessing needs torchvision ({exc}); pip install torchvision, or use fast preprocessing"
                ) from None
        return self._preset

    @property
    def crop_size(self) -> int:
        if self.spec is not None:
            return self.spec.crop_hw[0]
        size = getattr(self._preset, "crop_size", [224])
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def describe(self) -> str:
        inner = self.spec.describe() if self.spec is not None else repr(self._preset)
        how = (
            "fast: JPEG decoded at reduced scale when large, only the crop window resized"
            if self.mode == "fast"
            else "exact: the torchvision preset, bit for bit"
        )
        return (
            f"{inner}; {how}. EXIF orientation applied; L/LA/P/RGBA/CMYK/16-bit converted to RGB "
            f"(alpha over white); formats JPEG, PNG, WebP, GIF, BMP, TIFF; inputs over "
            f"{self.max_pixels / 1e6:.0f} MP refused."
        )

    # -- header checks ------------------------------------------------------------------------------
    def header_check(self, name: str) -> Callable[[int, int], None] | None:
        """What to check of an image's declared size before its pixels are decoded (None: nothing): the
        exact path refuses a size its preset would resize past ``max_resized_pixels``. Called by the
        decoder, and by the result cache before it hashes an image."""
        spec = self.spec
        if self.mode == "fast" or spec is None:
            return None

        def check(w: int, h: int) -> None:
            nw, nh = spec.resized_size(w, h)
            if nw * nh > self.max_resized_pixels:
                raise ImageError(
                    name,
                    f"aspect ratio {w}x{h} too extreme: the preset would resize it to {nw}x{nh} "
                    f"= {nw * nh / 1e6:.0f} MP, over the {self.max_resized_pixels / 1e6:.0f} MP "
                    "limit of exact preprocessing (fast preprocessing accepts it)",
                )

        return check

    # -- the two paths ------------------------------------------------------------------------------
    def _exact(self, img, name: str) -> np.ndarray:
        preset = self.preset
        try:
            out = preset(img)
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(name, f"preprocessing failed: {exc}") from None
        return out.numpy() if hasattr(out, "numpy") else np.asarray(out, dtype=np.float32)

    def _from_decoded(self, img: Image.Image, full_size: tuple[int, int], name: str) -> np.ndarray:
        if self.mode == "fast":
            assert self.spec is not None and self._normalize is not None  # fast runs only with a preset's numbers
            window = fast.crop_window(self.spec, *full_size)
            if window is not None:
                return self._normalize(fast.resize_crop(img, full_size, self.spec, window))
            if img.size != full_size:  # the crop pads: redo at full size through the exact path
                raise _Redo
        return self._exact(img, name)

    def __call__(self, src: object, *, name: str | None = None) -> np.ndarray:
        name = name or describe_source(src)
        if _is_tensor(src):
            return self._exact(_tensor_to_chw(src, name), name)
        if isinstance(src, np.ndarray):
            src = _array_to_image(src, name)
            if not isinstance(src, Image.Image):  # float array: the preset resizes it as a tensor
                return self._exact(src, name)
        shrink = None
        if self.mode == "fast" and self.spec is not None and len(self.spec.resize_size) == 1:
            shrink = None if float("inf") == DRAFT_MARGIN else int(self.spec.resize_size[0] * DRAFT_MARGIN)
        try:
            d = decode(src, max_pixels=self.max_pixels, name=name, min_short_side=shrink, check=self.header_check(name))
            return self._from_decoded(d.image, d.full_size, name)
        except _Redo:
            if hasattr(src, "seek"):
                src.seek(0)
            d = decode(src, max_pixels=self.max_pixels, name=name, check=self.header_check(name))
            return self._exact(d.image, name)


class _Redo(Exception):
    pass


def _tensor_to_chw(t, name: str):
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ImageError(
            name,
            f"tensor of shape {tuple(t.shape)} is not one image (want CxHxW or HxW); "
            "for a preprocessed batch call the classifier directly",
        )
    if t.shape[0] not in (1, 3, 4):
        raise ImageError(name, f"tensor has {t.shape[0]} channels (want 1, 3 or 4, channels first)")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        t = t[:3]
    if str(t.dtype) != "torch.uint8" and not t.is_floating_point():
        raise ImageError(name, f"tensor dtype {t.dtype} unsupported (want uint8, or float in [0, 1])")
    return t


def _array_to_image(arr: np.ndarray, name: str):
    """uint8 HxW / HxWxC -> PIL image; float HxW(xC) in [0, 1] -> a CxHxW torch tensor (exact path)."""
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(arr[..., :3] if arr.shape[-1] != 1 else arr[..., 0]))
    if arr.ndim == 2 and arr.dtype == np.uint8:
        return Image.fromarray(np.ascontiguousarray(arr))
    if arr.ndim in (2, 3) and np.issubdtype(arr.dtype, np.floating):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        return _tensor_to_chw(t.permute(2, 0, 1) if t.ndim == 3 else t, name)
    raise ImageError(
        name,
        f"numpy array of shape {arr.shape} and dtype {arr.dtype} is not an image "
        "(want HxW or HxWxC uint8, or float in [0, 1])",
    )
