"""Calibration sets: folders and iterables, their fingerprint, the held-out split, clear errors."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from ipex_resnet.errors import ConfigError
from ipex_resnet.quantization import calibration


@pytest.fixture(scope="module")
def three_photos(photos):
    return photos[:3]


def test_missing_folder_names_it_and_what_to_pass(tmp_path):
    with pytest.raises(ConfigError, match=r"calibration folder .*nope does not exist; pass calibration=DIR"):
        calibration.collect(tmp_path / "nope")


def test_empty_folder_and_folder_without_images(tmp_path):
    with pytest.raises(ConfigError, match="is empty; pass calibration=DIR"):
        calibration.collect(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.jpg").write_bytes(b"hidden files are skipped")
    with pytest.raises(ConfigError, match=r"has no image files \(.*\.jpg.*\)"):
        calibration.collect(tmp_path)


def test_file_instead_of_folder_and_no_source(tmp_path):
    f = tmp_path / "one.jpg"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is not a folder"):
        calibration.collect(f)
    with pytest.raises(ConfigError, match="INT8 needs calibration images"):
        calibration.collect(None)
    with pytest.raises(ConfigError, match="a folder or a list of images"):
        calibration.collect(b"bytes are one image, not a set")


def test_folder_is_searched_recursively_by_suffix(tmp_path, three_photos):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(three_photos[0], tmp_path / "x.JPEG")  # upper-case suffix counts
    shutil.copy(three_photos[1], tmp_path / "a" / "y.jpg")
    shutil.copy(three_photos[2], tmp_path / "a" / "b" / "z.jpeg")
    (tmp_path / "a" / "labels.csv").write_text("file\n")
    found = calibration.find_images(tmp_path)
    assert [p.name for p in found] == ["z.jpeg", "y.jpg", "x.JPEG"]  # sorted by path: a/b/z < a/y < x
    cs = calibration.collect(tmp_path, count=2)
    assert len(cs) == 2 and "2 of 3 images" in cs.source


def test_count_picks_evenly_across_a_sorted_folder(photos):
    cs = calibration.collect(photos, count=10)
    idx = [photos.index(p) for p in cs.items]
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == len(photos) - 1
    assert all(b - a >= len(photos) // 10 - 1 for a, b in zip(idx, idx[1:]))


def test_generator_is_read_only_up_to_count():
    gen = (np.full((8, 8, 3), i, np.uint8) for i in itertools.count())  # endless
    cs = calibration.collect(gen, count=5)
    assert len(cs) == 5
    assert next(gen)[0, 0, 0] == 5  # nothing beyond the fifth was consumed


def test_fingerprint_is_content_based_and_order_independent(tmp_path, three_photos):
    a = calibration.fingerprint(three_photos)
    assert a == calibration.fingerprint(list(reversed(three_photos)))
    renamed = [shutil.copy(p, tmp_path / f"renamed{i}.jpg") for i, p in enumerate(three_photos)]
    assert calibration.fingerprint(renamed) == a
    data = bytearray((tmp_path / "renamed0.jpg").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "renamed0.jpg").write_bytes(bytes(data))
    assert calibration.fingerprint(renamed) != a
    assert calibration.fingerprint(three_photos[:2]) != a
    # in-memory images hash their pixels
    img = np.zeros((4, 4, 3), np.uint8)
    assert calibration.fingerprint([img]) == calibration.fingerprint([img.copy()])
    assert calibration.fingerprint([img]) != calibration.fingerprint([img + 1])


def test_split_is_disjoint_and_spread(photos):
    calib, held = calibration.split(photos, 0.5)
    assert len(calib) == len(held) == len(photos) // 2 and not set(calib) & set(held)
    calib, held = calibration.split(list(range(400)))
    assert len(held) == calibration.MAX_HELD_OUT and set(calib) | set(held) == set(range(400))
    assert held[0] < 10 and held[-1] > 390  # spread over the whole (sorted, per-class) list
    calib, held = calibration.split(list(range(8)))
    assert len(held) == 2
    with pytest.raises(ConfigError, match="at least 2 images"):
        calibration.split(["only one"])
    with pytest.raises(ConfigError, match="at least one image on each side"):
        calibration.split(list(range(4)), 4)


def test_batches_with_the_classifier_preprocess(three_photos):
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.errors import ImageError
    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms())
    out = calibration.batches(three_photos, pre, batch_size=2, progress=False)
    assert [b.shape for b in out] == [(2, 3, 224, 224), (1, 3, 224, 224)]
    assert all(b.dtype == np.float32 for b in out)
    np.testing.assert_allclose(out[1][0], np.asarray(pre(three_photos[2])))
    with pytest.raises(ImageError, match="not-a-photo"):
        calibration.batches([three_photos[0], b"not-a-photo"], lambda x: pre(x, name="not-a-photo"), progress=False)
