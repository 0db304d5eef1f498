"""Hostile inputs: every class gets a clear per-image error or a correct answer, with memory bounded.

The memory checks run in a subprocess that blocks ``import torch`` (the fast path is PIL + numpy) and
report the peak RSS over the RSS just before the image, so a path that blew up (the old decoder
asked for tens of GB on a 3 KB PNG) would fail here, not in production.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from ipex_resnet.errors import ImageError
from ipex_resnet.imaging import Preprocessor, PresetSpec, open_image

pytestmark = pytest.mark.any_stack

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs one input through the fast path with torch unimportable; prints shape/error and RSS figures.
CHILD = r"""
import json, sys, types
pkg = types.ModuleType("ipex_resnet"); pkg.__path__ = [sys.argv[1] + "/ipex_resnet"]; sys.modules["ipex_resnet"] = pkg
sys.modules["torch"] = None; sys.modules["torchvision"] = None  # any import of them fails
from PIL import Image
from ipex_resnet.imaging import Preprocessor, PresetSpec, ImageError
pre = Preprocessor(PresetSpec(), mode=sys.argv[3])
if sys.argv[3] == "fast":
    pre(Image.new("RGB", (300, 200)))  # warm up: codecs and numpy paths loaded
def status_mb(key):  # VmHWM: peak RSS of this address space (ru_maxrss would carry the parent's over exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024
before = status_mb("VmRSS")
try:
    out = pre(sys.argv[2]); res = {"shape": list(out.shape), "dtype": str(out.dtype), "finite": bool((abs(out) < 10).all())}
except ImageError as exc:
    res = {"error": str(exc)}
res["delta_mb"] = status_mb("VmHWM") - before
res["torch_loaded"] = any(m == "torch" or m.startswith("torch.") for m, v in sys.modules.items() if v is not None)
print(json.dumps(res))
"""


def run_child(path, mode="fast") -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, REPO, str(path), mode], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not res["torch_loaded"]
    return res


def strip_png(size, mode="L", seed=0) -> bytes:
    """A PNG of a smooth gradient: tiny on disk however large it declares itself."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :] * np.ones((h, 1), np.float32)
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    img = Image.fromarray(((x + y) / 2).astype(np.uint8))
    buf = io.BytesIO()
    img.convert(mode).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def png_with_declared_size(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


@pytest.fixture(scope="module")
def fast():
    return Preprocessor(PresetSpec(), mode="fast")


@pytest.fixture(scope="module")
def exact():
    return Preprocessor(PresetSpec(), mode="exact")


# -- formats outside the allow-list ------------------------------------------------------------------


def _ico() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, "ICO")
    return buf.getvalue()


def _ppm() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "PPM")
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt,data",
    [
        ("EPS", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"),
        ("ICO", None),
        ("PNM", None),
        ("PDF", b"%PDF-1.4\n1 0 obj <<>> endobj\n"),
        ("PSD", b"8BPS\x00\x01" + b"\x00" * 40),
        ("SVG", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'),
    ],
)
def test_formats_outside_the_allow_list_are_refused_by_name(fmt, data, fast, exact):
    data = data or {"ICO": _ico, "PNM": _ppm}[fmt]()
    for pre in (fast, exact):
        with pytest.raises(ImageError) as info:
            pre(data, name="upload")
        msg = str(info.value)
        assert fmt in msg and "not accepted" in msg and "JPEG, PNG, WebP" in msg and "\n" not in msg


@pytest.mark.parametrize(
    "fmt,kw",
    [
        ("JPEG", {}),
        ("PNG", {}),
        ("WEBP", {}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_every_allowed_format_decodes(fmt, kw, photos, fast):
    with Image.open(photos[2]) as img:
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, fmt, **kw)
    out = open_image(buf.getvalue())
    assert out.mode == "RGB" and out.size == rgb.size
    assert fast(buf.getvalue()).shape == (3, 224, 224)


def test_gif_first_frame_only(fast):
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(open_image(buf.getvalue()))[10, 10].tolist() == [255, 0, 0]


# -- extreme aspect ratio --------------------------------------------------------------------------


def test_extreme_aspect_ratio_fast_is_bounded_and_exact_refuses(tmp_path):
    path = tmp_path / "strip.png"
    path.write_bytes(strip_png((100_000, 10)))
    assert path.stat().st_size < 64_000  # 1 MP declared; the preset's resize would be 2.5 GP
    res = run_child(path, "fast")
    assert res.get("shape") == [3, 224, 224] and res["finite"], res
    assert res["delta_mb"] < 64, res  # decoded: 1 MB (L) / 3 MB (RGB)
    res = run_child(path, "exact")  # torch is blocked: the refusal must come from the header check
    assert "aspect ratio 100000x10 too extreme" in res.get("error", ""), res
    assert "fast preprocessing accepts it" in res["error"]


def test_extreme_aspect_ratio_fast_equals_exact(fast):
    data = strip_png((5000, 20))  # resized 64000x256: small enough for the exact path to run
    exact = Preprocessor(PresetSpec(), mode="exact", max_resized_pixels=20_000_000)
    a, b = fast(data), exact(data)
    assert np.abs(a - b).max() <= 1 / 255 / 0.224 + 1e-6


# -- huge headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("w,h", [(100_000, 100_000), (20_000, 4_000), (2**31 - 1, 2)])
def test_huge_declared_size_refused_before_decoding(w, h, tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_declared_size(w, h))
    res = run_child(path)
    assert "exceeds" in res.get("error", "") or "decompression bomb" in res.get("error", ""), res
    assert res["delta_mb"] < 16, res


def test_huge_gif_and_bmp_headers(fast):
    gif = bytearray(
        b"GIF89a"
        + struct.pack("<HH", 60000, 60000)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", 60000, 60000)
        + b"\x00\x02\x02\x44\x01\x00;"
    )
    with pytest.raises(ImageError, match="exceeds|decompression bomb"):
        fast(bytes(gif))
    bmp = io.BytesIO()
    Image.new("RGB", (4, 4)).save(bmp, "BMP")
    data = bytearray(bmp.getvalue())
    data[18:26] = struct.pack("<ii", 50000, 50000)
    with pytest.raises(ImageError, match="exceeds|decompression bomb"):
        fast(bytes(data))


# -- 16-bit -----------------------------------------------------------------------------------------


def test_16bit_scaled_not_clipped_with_bounded_memory(tmp_path, photos, fast):
    with Image.open(photos[5]) as img:
        gray = np.asarray(img.convert("L").resize((400, 300)))
    img16 = Image.fromarray(gray.astype(np.uint16) * 257)
    assert img16.mode == "I;16"
    for fmt in ("PNG", "TIFF"):
        buf = io.BytesIO()
        img16.save(buf, fmt)
        out = open_image(buf.getvalue())
        np.testing.assert_allclose(np.asarray(out)[..., 0], gray, atol=1)
        np.testing.assert_allclose(fast(buf.getvalue()), fast(Image.fromarray(gray)), atol=1 / 255 / 0.224 + 1e-6)
    big = tmp_path / "big16.png"  # 4000x4000x16-bit: 32 MB decoded; RGB 48 MB
    ramp = (np.arange(4000, dtype=np.uint32)[None, :] * 16 + np.arange(4000, dtype=np.uint32)[:, None]) % 65536
    Image.fromarray(ramp.astype(np.uint16)).save(big, "PNG", compress_level=1)
    res = run_child(big)
    assert res.get("shape") == [3, 224, 224], res
    assert res["delta_mb"] < 5 * 32, res  # a float64 copy alone would be 128 MB


# -- broken EXIF -----------------------------------------------------------------------------------


def _with_app1(jpeg: bytes, payload: bytes) -> bytes:
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


@pytest.mark.parametrize(
    "payload",
    [
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff" + b"\x01" * 40,  # IFD with 65535 entries
        b"Exif\x00\x00II\x2a\x00\xff\xff\xff\x7f",  # IFD offset past the end
        b"Exif\x00\x00XX\x00\x00garbage-not-tiff",  # not a TIFF header
        b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x63\x00\x00",  # orientation 99
    ],
    ids=["huge-ifd", "offset-past-end", "not-tiff", "orientation-99"],
)
def test_broken_exif_does_not_reject_a_good_image(payload, photos, fast, exact):
    data = photos[7].read_bytes()
    bad = _with_app1(data, payload)
    for pre in (fast, exact):
        assert np.array_equal(pre(bad), pre(data))


# -- truncated -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated_is_a_clear_error(fmt, photos, fast, exact):
    with Image.open(photos[1]) as img:
        rgb = img.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, fmt)
    data = buf.getvalue()[: len(buf.getvalue()) // 2]
    for pre in (fast, exact):
        with pytest.raises(ImageError) as info:
            pre(data, name="half")
        assert str(info.value).startswith("half: ") and (
            "truncated" in str(info.value) or "cannot decode" in str(info.value)
        )
