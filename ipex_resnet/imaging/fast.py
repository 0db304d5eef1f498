"""The fast path: resize only the crop window (PIL, uint8), then one multiply-add to normalize.

Resize-then-center-crop is computed as one ``Image.resize(..., box=...)`` of the source region that
the crop will keep, at the scale the full resize would use, so the resized image (341x256 for a
500x375 photo, 2.5 GP for a 100000x10 strip) is never built: a horizontal pass over the rows the
crop needs, then a vertical one, so the pixels equal those of the full resize followed by the crop
up to 1 level of 255 on a few pixels (asserted on the real photos). Normalizing is ``x * (1 / (255 std)) - mean / std``
in float32, written straight into the 3xHxW output (at most 1 ulp from torchvision's
``(x / 255 - mean) / std``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ipex_resnet.imaging.preset import PresetSpec

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
SUPPORT = {"nearest": 0.5, "box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}
# A large image is first box-averaged by an integer factor so that at least this much resizing is left
# (Pillow's reducing_gap; its docs: "indistinguishable from fair resampling" at 3). Only large non-JPEG
# images reach it; JPEGs are shrunk in the DCT domain.
REDUCING_GAP = 3.0


class Normalizer:
    """HxWx3 uint8 -> 3xHxW float32 ``(x / 255 - mean) / std`` as one multiply and one subtract."""

    def __init__(self, spec: PresetSpec):
        mean = np.asarray(spec.mean, dtype=np.float64)
        std = np.asarray(spec.std, dtype=np.float64)
        self.scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
        self.bias = (mean / std).astype(np.float32)[:, None, None]

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        out = np.empty((3,) + arr.shape[:2], dtype=np.float32)
        np.multiply(arr.transpose(2, 0, 1), self.scale, out=out, dtype=np.float32)
        out -= self.bias
        return out


def crop_window(spec: PresetSpec, full_w: int, full_h: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """``((new_w, new_h), (left, top))`` of the center crop inside the resized image, or None when the
    crop is larger than the resized image (torchvision pads then; the exact path handles it)."""
    new_w, new_h = spec.resized_size(full_w, full_h)
    ch, cw = spec.crop_hw
    if cw > new_w or ch > new_h:
        return None
    return (new_w, new_h), (int(round((new_w - cw) / 2.0)), int(round((new_h - ch) / 2.0)))


def resize_crop(
    img: Image.Image, full_size: tuple[int, int], spec: PresetSpec, window: tuple[tuple[int, int], tuple[int, int]]
) -> np.ndarray:
    """The preset's resize + center crop of an RGB image as HxWx3 uint8, resizing only the crop window.

    ``full_size`` is the size the preset sees (before any DCT-domain scaling of ``img``). Pillow
    resizes horizontally, then vertically; so do we (one ``resize(box=...)`` may pick the other
    order), on the rows the crop needs only, so the values match the full resize + crop.
    """
    (new_w, new_h), (left, top) = window
    ch, cw = spec.crop_hw
    if (new_w, new_h) == full_size and img.size == full_size:  # torchvision skips the resize
        return np.asarray(img.crop((left, top, left + cw, top + ch)))
    resample = RESAMPLE[spec.interpolation]
    factor = int(min(img.width / new_w, img.height / new_h) / REDUCING_GAP)
    if factor >= 2 and resample != Image.Resampling.NEAREST:
        img = img.reduce(factor)  # a large non-JPEG: box-average first, as Pillow's reducing_gap does
    sx, sy = img.width / new_w, img.height / new_h
    x0, x1 = left * sx, min((left + cw) * sx, img.width)
    y0, y1 = top * sy, min((top + ch) * sy, img.height)
    reach = SUPPORT[spec.interpolation] * max(sy, 1.0) + 2  # rows the vertical filter touches
    r0, r1 = max(0, int(y0 - reach)), min(img.height, int(np.ceil(y1 + reach)))
    rows = img.crop((0, r0, img.width, r1)) if (r0, r1) != (0, img.height) else img
    if (x0, x1) != (0, img.width) or cw != img.width:
        rows = rows.resize((cw, r1 - r0), resample, box=(x0, 0, x1, r1 - r0))
    out = rows.resize((cw, ch), resample, box=(0, y0 - r0, cw, y1 - r0))
    return np.asarray(out)
