"""Exact preprocessing equals torchvision's preset bit for bit on real photos, for every accepted input
type; fast preprocessing agrees with it; bad inputs give one clear error each."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet18_Weights

from ipex_resnet.errors import ImageError
from ipex_resnet.imaging import Preprocessor, PresetSpec, open_image

PRESET = ResNet18_Weights.DEFAULT.transforms()


@pytest.fixture(scope="module")
def pre():
    return Preprocessor.from_preset(PRESET, mode="exact")


@pytest.fixture(scope="module")
def fast():
    return Preprocessor.from_preset(PRESET, mode="fast")


def torchvision_reference(path) -> np.ndarray:
    with Image.open(path) as img:
        return PRESET(img.convert("RGB")).numpy()


def test_exact_equals_torchvision_preset_on_real_photos(pre, photos):
    for path in photos[::10]:
        ref = torchvision_reference(path)
        out = pre(path)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        assert np.array_equal(out, ref), path.name
        assert np.array_equal(pre(str(path)), ref)
        data = path.read_bytes()
        assert np.array_equal(pre(data), ref)
        assert np.array_equal(pre(io.BytesIO(data)), ref)
        with Image.open(path) as img:
            assert np.array_equal(pre(img), ref)
            assert np.array_equal(pre(np.asarray(img.convert("RGB"))), ref)


def test_fast_matches_exact_pixels_on_real_photos(fast, pre, photos):
    """Photos too small for DCT-domain scaling (short side < 512) go through the same resize, on the
    crop window only: all but a few values equal, up to float32 rounding of the normalize (1 ulp)."""
    same = []
    for path in photos[::5]:
        with Image.open(path) as img:
            if min(img.size) >= 512:
                continue
        a, b = fast(path), pre(path)
        assert a.shape == b.shape == (3, 224, 224) and a.dtype == np.float32
        assert np.abs(a - b).max() <= 1 / 255 / 0.224 + 1e-6, path.name  # at most 1 level of 255
        same.append(np.isclose(a, b, rtol=0, atol=1e-6).mean())  # 1 level of 255 is 0.017
        assert same[-1] > 0.95, path.name
    assert len(same) >= 20 and np.mean(same) > 0.995
    for path in photos[::5]:  # every input type gives the same array
        data = path.read_bytes()
        ref = fast(path)
        with Image.open(path) as img:
            assert np.array_equal(fast(img), ref) and np.array_equal(fast(data), ref)
            assert np.array_equal(fast(io.BytesIO(data)), ref)


def test_fast_agrees_with_exact_through_the_model(fast, pre, photos, checkpoint):
    """Top-5 and logits of the BN-calibrated ResNet-18, fast vs exact, on real photos (docs/input.md)."""
    import ipex_resnet

    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager", precision="fp32")
    chosen = photos[::4]
    ref = clf(torch.from_numpy(np.stack([pre(p) for p in chosen])))
    got = clf(torch.from_numpy(np.stack([fast(p) for p in chosen])))
    overlap = [len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(ref.topk(5).indices, got.topk(5).indices)]
    assert np.mean(overlap) >= 0.97 and min(overlap) >= 0.6
    assert (ref.argmax(1) == got.argmax(1)).float().mean() >= 0.95
    assert (ref - got).abs().max() < 0.2


def test_preset_spec_round_trip():
    spec = PresetSpec.from_torchvision(PRESET)
    assert spec.resize_size == (256,) and spec.crop_size == (224,) and spec.interpolation == "bilinear"
    assert PresetSpec.from_dict(spec.to_dict()) == spec
    import json

    assert PresetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.resized_size(500, 375) == (341, 256) and spec.resized_size(375, 500) == (256, 341)
    rebuilt = spec.to_torchvision()
    with Image.new("RGB", (300, 200), (10, 200, 30)) as img:
        assert torch.equal(rebuilt(img), PRESET(img))
    from ipex_resnet.errors import ConfigError

    with pytest.raises(ConfigError, match="not a torchvision ImageClassification"):
        PresetSpec.from_torchvision(torch.nn.Identity())
    with pytest.raises(ConfigError, match="unknown preset field"):
        PresetSpec.from_dict({**spec.to_dict(), "bogus": 1})
    # one mean/std value is the same for R, G and B, in a dict as on the command line (--mean 0.5)
    one = PresetSpec.from_dict({"resize_size": 80, "crop_size": 64, "mean": 0.5, "std": 0.25})
    assert one.mean == (0.5, 0.5, 0.5) and one.std == (0.25, 0.25, 0.25)
    with pytest.raises(ConfigError, match="preset mean must be a number or 3 numbers"):
        PresetSpec.from_dict({"mean": "grey"})


def test_output_shape_for_mixed_sizes(pre, photos):
    sizes = set()
    for path in photos[:20]:
        with Image.open(path) as img:
            sizes.add(img.size)
        assert pre(path).shape == (3, 224, 224)
    assert len(sizes) > 3


def test_describe_names_the_preset(pre, fast):
    text = pre.describe()
    assert "short side to 256" in text and "center crop 224x224" in text and "EXIF" in text and "exact" in text
    assert "fast" in fast.describe()


def test_exif_orientation_applied(pre, photos):
    with Image.open(photos[0]) as img:
        rgb = img.convert("RGB")
    rotated_pixels = rgb.transpose(Image.Transpose.ROTATE_90)  # what a camera stored, sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    rotated_pixels.save(buf, "JPEG", exif=exif, quality=95)
    shown = open_image(buf.getvalue())
    assert shown.size == rgb.size  # upright again
    plain = io.BytesIO()
    rotated_pixels.save(plain, "JPEG", quality=95)
    assert not np.array_equal(pre(buf.getvalue()), pre(plain.getvalue()))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_modes_convert_to_rgb(mode, photos):
    with Image.open(photos[5]) as img:
        rgb = img.convert("RGB").resize((64, 48))
    if mode == "I;16":
        arr = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        img = Image.fromarray(arr)
        assert img.mode == "I;16"
        out = open_image(img)
        assert out.mode == "RGB"
        # 16-bit values are scaled to 8 bits, not clipped to white
        np.testing.assert_allclose(np.asarray(out)[..., 0], np.asarray(rgb.convert("L")), atol=1)
        return
    img = rgb.convert(mode)
    buf = io.BytesIO()
    img.save(buf, "TIFF" if mode == "CMYK" else "PNG")
    out = open_image(buf.getvalue())
    assert out.mode == "RGB" and out.size == (64, 48)
    if mode in ("L", "LA", "1"):
        a = np.asarray(out)
        assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert np.asarray(open_image(buf.getvalue()))[0, 0].tolist() == [255, 255, 255]


def test_tensor_inputs(pre, photos):
    with Image.open(photos[3]) as img:
        arr = np.array(img.convert("RGB"))
    u8 = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    assert pre(u8).shape == (3, 224, 224)
    assert np.allclose(pre(u8), pre(u8.float() / 255), atol=0.05)  # uint8 resize rounds
    assert pre(u8[0]).shape == (3, 224, 224)  # grayscale HxW
    with pytest.raises(ImageError, match="not one image"):
        pre(u8.unsqueeze(0))


def jpeg_bytes(path) -> bytes:
    return path.read_bytes()


@pytest.mark.parametrize(
    "case,problem",
    [
        ("missing", "no such file"),
        ("empty", "empty (zero bytes)"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("bomb", "exceeds"),
        ("directory", "is a directory"),
    ],
)
@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_bad_inputs_one_clear_error(case, problem, mode, tmp_path, photos):
    pre = Preprocessor.from_preset(PRESET, mode=mode)
    target = tmp_path / f"{case}.jpg"
    if case == "empty":
        target.write_bytes(b"")
    elif case == "text":
        target.write_text("this is not a picture\n")
    elif case == "truncated":
        data = photos[0].read_bytes()
        target.write_bytes(data[: len(data) // 3])
    elif case == "bomb":
        # a real PNG header declaring 100000 x 100000 pixels: refused before any pixel is decoded
        buf = io.BytesIO()
        Image.new("L", (1, 1)).save(buf, "PNG")
        data = bytearray(buf.getvalue())
        data[16:24] = (100000).to_bytes(4, "big") * 2
        import zlib

        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
        target.write_bytes(bytes(data))
    elif case == "directory":
        target.mkdir()
    with pytest.raises(ImageError) as info:
        pre(target)
    assert problem in str(info.value)
    assert str(target) in str(info.value)
    assert "\n" not in str(info.value)


def test_unsupported_type_and_bad_arrays(pre):
    with pytest.raises(ImageError, match="unsupported input type int"):
        pre(42)
    with pytest.raises(ImageError, match="numpy array of shape"):
        pre(np.zeros((4, 4, 7), dtype=np.uint8))
    with pytest.raises(ImageError, match="binary mode"):
        pre(io.StringIO("abc"))
