"""Image loading and preprocessing, exactly as the weights' torchvision preset.

Accepts paths, bytes, file objects, PIL images, numpy arrays and tensors. Applies EXIF orientation,
converts L, LA, P, RGBA, CMYK and 16-bit images to RGB, and refuses decompression bombs (declared
size above ``max_pixels``) before decoding a single pixel.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# 64 megapixels: well above any camera photo that a 224x224 classifier could use, far below a bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# Transparent pixels are composited onto white, as an image viewer shows them.
ALPHA_BACKGROUND = (255, 255, 255)



def describe_source(src: object, index: int | None = None) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    kind = type(src).__name__
    return f"input {index} ({kind})" if index is not None else kind


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def open_image(src: object, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode one input into an RGB PIL image, or raise ImageError naming the problem."""
    name = name or describe_source(src)
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (str, os.PathLike)):
            path = Path(src)
            if not path.exists():
                raise ImageError(name, "no such file")
            if path.is_dir():
                raise ImageError(name, "is a directory, not an image")
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
        elif isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
        elif hasattr(src, "read"):
            data = src.read()
            if not isinstance(data, (bytes, bytearray)):
                raise ImageError(name, "file object must be opened in binary mode")
        else:
            raise ImageError(name, f"unsupported input type {type(src).__name__}; pass a path, bytes, "
                                   "a binary file, a PIL image, a numpy array or a tensor")
        if not data:
            raise ImageError(name, "empty (zero bytes)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(name, "not an image (unrecognized format)") from None
        except Image.DecompressionBombError as exc:
            raise ImageError(name, f"declared size exceeds the limit (decompression bomb?): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - malformed headers raise assorted errors
            raise ImageError(name, f"cannot decode: {exc}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(name, f"declared size {w}x{h} = {w * h / 1e6:.0f} MP exceeds the "
                               f"{max_pixels / 1e6:.0f} MP limit (decompression bomb?)")
    if w == 0 or h == 0:
        raise ImageError(name, f"image has no pixels ({w}x{h})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated data raises OSError, broken EXIF others
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg:
            msg = "truncated image data"
        raise ImageError(name, f"cannot decode: {msg}") from None


def _tensor_to_chw(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3:
        raise ImageError(name, f"tensor of shape {tuple(t.shape)} is not one image (want CxHxW or HxW); "
                               "for a preprocessed batch call the classifier directly")
    if t.shape[0] not in (1, 3, 4):
        raise ImageError(name, f"tensor has {t.shape[0]} channels (want 1, 3 or 4, channels first)")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        t = t[:3]
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise ImageError(name, f"tensor dtype {t.dtype} unsupported (want uint8, or float in [0, 1])")
    return t


class Preprocessor:
    """Turns one input into the normalized CxHxW float tensor the weights were trained on."""

    def __init__(self, preset: torch.nn.Module, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.preset = preset
        self.max_pixels = max_pixels

    @property
    def crop_size(self) -> int:
        size = getattr(self.preset, "crop_size", [224])
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    def describe(self) -> str:
        inner = self.preset.describe() if hasattr(self.preset, "describe") else repr(self.preset)
        return f"{inner} EXIF orientation applied; L/LA/P/RGBA/CMYK/16-bit converted to RGB " \
               f"(alpha over white); inputs over {self.max_pixels / 1e6:.0f} MP refused."

    def __call__(self, src: object, *, name: str | None = None) -> torch.Tensor:
        name = name or describe_source(src)
        if isinstance(src, torch.Tensor):
            return self.preset(_tensor_to_chw(src, name))
        if isinstance(src, np.ndarray):
            arr = src
            if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.dtype == np.uint8:
                src = Image.fromarray(arr[..., :3] if arr.shape[-1] != 1 else arr[..., 0])
            elif arr.ndim == 2 and arr.dtype == np.uint8:
                src = Image.fromarray(arr)
            elif arr.ndim in (2, 3) and np.issubdtype(arr.dtype, np.floating):
                t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
                return self.preset(_tensor_to_chw(t.permute(2, 0, 1) if t.ndim == 3 else t, name))
            else:
                raise ImageError(name, f"numpy array of shape {arr.shape} and dtype {arr.dtype} is not an "
                                       "image (want HxW or HxWxC uint8, or float in [0, 1])")
        return self.preset(open_image(src, max_pixels=self.max_pixels, name=name))
