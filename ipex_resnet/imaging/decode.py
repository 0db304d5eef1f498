"""Bounded decoding: an allow-list of formats, header checks before any pixel, EXIF orientation.

Only JPEG, PNG, WebP, GIF (first frame), BMP and TIFF (first page) are opened; Pillow is told so
(``Image.open(..., formats=...)``), so EPS (Ghostscript), ICO (decoded inside ``open``), PSD and the
rest are never even parsed. The declared size is checked against ``max_pixels`` before decoding.
A JPEG can be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (``min_short_side``), so a large
photo is never decoded at full size when the preset needs 256 pixels. Memory per image stays a
small multiple of its decoded size: no float64 copies, no copy for EXIF orientation 1.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ipex_resnet.errors import ImageError

# Pillow format names; the order is the order Pillow tries them in.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
ALLOWED_TEXT = "JPEG, PNG, WebP, GIF (first frame), BMP, TIFF (first page)"
# File extensions a folder walk picks up (an explicitly named file is always tried).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib", ".tif", ".tiff"}
)
# 64 megapixels: well above any camera photo that a 224x224 classifier could use, far below a bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# Transparent pixels are composited onto white, as an image viewer shows them.
ALPHA_BACKGROUND = (255, 255, 255)

# Magic numbers of formats outside the allow-list, to name them in the error instead of "not an image".
_REFUSED_SIGNATURES = (
    (b"%!PS", "EPS/PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"8BPS", "PSD"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x0a\x05\x01", "PCX"),
    (b"SIMPLE  =", "FITS"),
    (b"\x59\xa6\x6a\x95", "Sun raster"),
    (b"gimp xcf", "XCF"),
    (b"#define", "XBM"),
    (b"/* XPM */", "XPM"),
    (b"\x01\xda", "SGI"),
    (b"FORM", "IFF"),
    (b"\x97JB2", "JBIG2"),
)
_PNM = {b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"Pf", b"PF"}
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def describe_source(src: object, index: int | None = None) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    kind = type(src).__name__
    return f"input {index} ({kind})" if index is not None else kind


def sniff_refused(head: bytes) -> str | None:
    """The name of a known format outside the allow-list, from the first bytes, or None."""
    for sig, fmt in _REFUSED_SIGNATURES:
        if head.startswith(sig):
            return fmt
    if head[:2] in _PNM and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return "PNM (PPM/PGM/PBM)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return {b"avif": "AVIF", b"avis": "AVIF"}.get(
            brand, "HEIF/HEIC" if brand[:3] in (b"hei", b"hev", b"mif") else None
        )
    stripped = head.lstrip()
    if stripped.startswith((b"<svg", b"<?xml")):
        return "SVG/XML"
    return None


@dataclasses.dataclass
class Decoded:
    """An RGB image, upright, and the upright size the file declares (before any DCT-domain scaling)."""

    image: Image.Image
    full_size: tuple[int, int]


def _orientation(img: Image.Image) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns "Corrupt EXIF data" and carries on
            value = int(img.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1
    return value if value in _TRANSPOSE else 1


def _int_to_u8(arr: np.ndarray, peak: int) -> np.ndarray:
    """Integers in [0, peak] (peak 255 or 65535) -> uint8, rounding as ``v * 255 / peak + 0.5`` would,
    in integer math, a band of rows at a time (no float64 or full-size wide copies)."""
    out = np.empty(arr.shape, dtype=np.uint8)
    step = max(1, (1 << 20) // max(1, arr.shape[1]))
    for r in range(0, arr.shape[0], step):
        band = np.clip(arr[r : r + step], 0, peak).astype(np.uint32)
        if peak != 255:
            band += 128  # round(v / 257) == (v + 128) // 257 for integers
            band //= 257
        out[r : r + step] = band
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB: 16-bit and 32-bit integer scaled (not clipped), float in [0, 1] or
    [0, 255], palette and alpha composited onto white, CMYK/YCbCr/LAB/HSV converted."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img)
        peak = 65535 if mode.startswith("I;16") or int(arr.max(initial=0)) > 255 else 255
        return Image.fromarray(_int_to_u8(arr, peak)).convert("RGB")
    if mode == "F":
        arr = np.asarray(img)
        scale = np.float32(255.0 if float(arr.max(initial=0.0)) <= 1.0 else 1.0)
        out = arr * scale
        out += np.float32(0.5)
        np.clip(out, 0, 255, out=out)
        return Image.fromarray(out.astype(np.uint8)).convert("RGB")
    if mode == "P" and "transparency" in img.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _read_source(src: object, name: str) -> BinaryIO:
    """A binary file object for ``src`` (the caller closes it)."""
    import io

    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise ImageError(name, "no such file")
        if path.is_dir():
            raise ImageError(name, "is a directory, not an image")
        try:
            f = open(path, "rb")  # noqa: SIM115 - handed to the caller, who closes it
        except OSError as exc:
            raise ImageError(name, f"cannot read: {exc.strerror or exc}") from None
        if os.fstat(f.fileno()).st_size == 0:
            f.close()
            raise ImageError(name, "empty (zero bytes)")
        return f
    if isinstance(src, (bytes, bytearray, memoryview)):
        if not len(src):
            raise ImageError(name, "empty (zero bytes)")
        return io.BytesIO(src)
    if hasattr(src, "read"):
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(name, "file object must be opened in binary mode")
        if not data:
            raise ImageError(name, "empty (zero bytes)")
        return io.BytesIO(data)
    raise ImageError(
        name,
        f"unsupported input type {type(src).__name__}; pass a path, bytes, a binary file, "
        "a PIL image, a numpy array or a tensor",
    )


def _check_size(w: int, h: int, max_pixels: int, name: str) -> None:
    if w * h > max_pixels:
        raise ImageError(
            name,
            f"declared size {w}x{h} = {w * h / 1e6:.0f} MP exceeds the "
            f"{max_pixels / 1e6:.0f} MP limit (decompression bomb?)",
        )
    if w <= 0 or h <= 0:
        raise ImageError(name, f"image has no pixels ({w}x{h})")


def _decode_error(name: str, exc: Exception) -> ImageError:
    msg = str(exc) or type(exc).__name__
    if "truncated" in msg or "broken data stream" in msg or "unrecognized data stream" in msg:
        return ImageError(name, "cannot decode: truncated image data", code="truncated_image")
    return ImageError(name, f"cannot decode: {msg}")


def decode(
    src: object,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    min_short_side: int | None = None,
    check: Callable[[int, int], None] | None = None,
) -> Decoded:
    """Decode one input into an upright RGB PIL image, or raise ImageError naming the problem.

    ``min_short_side``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as its short side
    stays at least this long. ``check(w, h)``: called with the declared size (before EXIF rotation)
    before any pixel is decoded; it raises ImageError to refuse (e.g. a resize that would be too large).
    """
    name = name or describe_source(src)
    if isinstance(src, Image.Image):
        _check_size(*src.size, max_pixels, name)
        if check:
            check(*src.size)
        return _upright(src, src.size, name)
    f = _read_source(src, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open(f, name)
            w, h = img.size
            _check_size(w, h, max_pixels, name)
            if check:
                check(w, h)
            try:
                if img.format == "JPEG" and min_short_side:
                    scale = min(w, h) / min_short_side
                    if scale >= 2:
                        img.draft(
                            img.mode if img.mode in ("RGB", "L") else None,
                            (max(1, int(w / scale)), max(1, int(h / scale))),
                        )
                img.load()
            except Exception as exc:
                raise _decode_error(name, exc) from None
            return _upright(img, (w, h), name)
    finally:
        f.close()


def _open(f: BinaryIO, name: str) -> Image.Image:
    """The image's header, from an allowed format only (nothing decoded yet)."""
    try:
        return Image.open(f, formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        f.seek(0)
        refused = sniff_refused(f.read(32))
        if refused:
            raise ImageError(name, f"{refused} images are not accepted (accepted: {ALLOWED_TEXT})") from None
        raise ImageError(name, f"not an image (unrecognized format; accepted: {ALLOWED_TEXT})") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"declared size exceeds the limit (decompression bomb?): {exc}") from None
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(name, f"cannot decode: {exc}") from None


def _upright(img: Image.Image, size: tuple[int, int], name: str) -> Decoded:
    """``img`` turned upright by its EXIF orientation, in RGB, with its full upright size (``size`` is
    the declared, pre-rotation width and height)."""
    orient = _orientation(img)
    full = (size[1], size[0]) if orient >= 5 else size
    try:
        if orient != 1:
            img = img.transpose(_TRANSPOSE[orient])
        return Decoded(to_rgb(img), full)
    except Exception as exc:
        raise _decode_error(name, exc) from None


def open_image(src: object, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> Image.Image:
    """Decode one input at full size into an upright RGB PIL image, or raise ImageError."""
    return decode(src, max_pixels=max_pixels, name=name).image
