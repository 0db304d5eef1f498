"""Inputs: random NCHW batches at the weights' crop size, photo-like synthetic JPEGs (the bundled
default), a 1920x1080 JPEG, real JPEGs from a directory, and INT8 calibration batches."""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.decode import IMAGE_EXTENSIONS
from ipex_resnet.models.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np

    from ipex_resnet.models.resolve import LoadedModel

CALIBRATION_IMAGES = 32


@functools.lru_cache(maxsize=4)
def resolved(model: ModelSpec) -> LoadedModel:
    """The benchmarked model (a torchvision name with random weights by default, or the user's model
    by import path with its checkpoint), with the spec's preset and categories, built once per process."""
    from ipex_resnet.models.resolve import resolve

    return resolve(model.model, **model.resolve_kwargs())


def preset(model: ModelSpec) -> dict[str, Any] | None:
    """The preprocessing preset as data (crop and resize sizes, mean/std, ...); None for a custom transform."""
    from ipex_resnet.core.build import preset_dict

    return preset_dict(resolved(model).transforms)


def crop_size(model: ModelSpec) -> int:
    from ipex_resnet.core.build import crop_of

    return crop_of(preset(model))


def batch(n: int, crop: int, seed: int = 0):
    """A float32 NCHW numpy batch of standard-normal values (what a normalized image looks like)."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal((n, 3, crop, crop), dtype=np.float32)


def synthetic_jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    """A photo-like JPEG (smooth gradients + noise), made in memory: the bundled default input."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [128 + 100 * np.sin(xx / 40 + seed), 128 + 100 * np.cos(yy / 30), 128 + 60 * np.sin((xx + yy) / 70)], axis=-1
    )
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def upscale_jpeg(data: bytes, size: tuple[int, int] = (1920, 1080), quality: int = 92) -> bytes:
    """A large JPEG made from a photo (bicubic upscale), e.g. the 1920x1080 end-to-end case."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def image_files(directory: str | os.PathLike) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"--images {str(d)!r} is not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError(f"--images {str(d)!r} holds no .jpg/.jpeg/.png files")
    return files


def load_images(directory: str | os.PathLike, limit: int | None = None) -> list[bytes]:
    return [p.read_bytes() for p in image_files(directory)[:limit]]


def jpegs(directory: str | os.PathLike | None, limit: int | None = None) -> list[bytes]:
    """Real JPEGs from ``directory``, or four synthetic 500x375 ones."""
    return load_images(directory, limit) if directory else [synthetic_jpeg(seed=s) for s in range(4)]


def calibration_batches(model: ModelSpec, images: Sequence[bytes], limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Preprocessed images (the model's preset, exact), one 1x3xHxW float32 array each, for INT8 peers."""
    import numpy as np

    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(resolved(model).transforms, mode="exact")
    return [np.asarray(pre(data), dtype=np.float32)[None] for data in list(images)[:limit]]


__all__ = [
    "batch",
    "calibration_batches",
    "crop_size",
    "image_files",
    "jpegs",
    "load_images",
    "preset",
    "resolved",
    "synthetic_jpeg",
    "upscale_jpeg",
]
