"""File digests remembered across loads (core/digests.py): the calibration and labelled images of an INT8
load, and a checkpoint, are hashed once per change of the file, and a changed file is always hashed again."""

from __future__ import annotations

import hashlib
import os

import pytest
from conftest import sample_photos

from ipex_resnet.core import int8
from ipex_resnet.core.digests import MEMO_NAME, FileDigests, file_digests
from ipex_resnet.core.keys import weights_id
from ipex_resnet.quantization.calibration import fingerprint

pytestmark = pytest.mark.any_stack


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(root))
    monkeypatch.delenv("IPEX_RESNET_NO_CACHE", raising=False)
    return root


def test_a_file_is_hashed_once_per_change(cache_root, tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 4096)
    with file_digests() as first:
        assert first(f) == hashlib.sha256(b"a" * 4096).hexdigest() and first.computed == 1
    assert (cache_root / MEMO_NAME).is_file()
    with file_digests() as later:  # the next load: from the memo, the file is not read
        assert later(f) == hashlib.sha256(b"a" * 4096).hexdigest() and later.computed == 0
    f.write_bytes(b"b" * 4096)  # same size; the write moves its change time
    with file_digests() as after:
        assert after(f) == hashlib.sha256(b"b" * 4096).hexdigest() and after.computed == 1
    os.utime(f, ns=(0, 0))  # a tool that resets the modification time: still hashed again, still right
    with file_digests() as reset:
        assert reset(f) == hashlib.sha256(b"b" * 4096).hexdigest() and reset.computed == 1


def test_no_memo_where_the_cache_is_off_or_open_to_others(cache_root, tmp_path, monkeypatch):
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    cache_root.chmod(0o777)  # writable by others: its memo is not trusted, nor written
    with file_digests() as d:
        d(f)
    assert d.memo is None and not (cache_root / MEMO_NAME).exists()
    cache_root.chmod(0o700)
    monkeypatch.setenv("IPEX_RESNET_NO_CACHE", "1")
    with file_digests() as d:
        d(f)
    assert d.memo is None and not (cache_root / MEMO_NAME).exists()


def test_int8_keys_are_unchanged_and_the_second_load_reads_no_image(cache_root, tmp_path):
    """The calibration set's and the labelled images' fingerprints equal the plain ones (cached keys stay
    valid), and a second load takes every image's digest from the memo."""
    photos = sample_photos()[:12]
    labels = tmp_path / "labelled"
    labels.mkdir()
    for p in photos:
        (labels / p.name).write_bytes(p.read_bytes())
    (labels / "labels.csv").write_text("file,class_index\n" + "".join(f"{p.name},{i}\n" for i, p in enumerate(photos)))
    cal = int8.calibration_set([str(p) for p in photos])
    assert cal.digest == fingerprint([str(p) for p in photos])
    samples, labelled_id = int8.labelled_set(str(labels), None)
    assert len(samples) == len(photos)
    memo = FileDigests(cache_root / MEMO_NAME)
    assert fingerprint([str(p) for p in photos], file_digest=memo) == cal.digest and memo.computed == 0
    assert int8.labelled_set(str(labels), None)[1] == labelled_id
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(os.urandom(1 << 16))
    assert weights_id("resnet18", str(ckpt)) == "sha256:" + hashlib.sha256(ckpt.read_bytes()).hexdigest()
    memo = FileDigests(cache_root / MEMO_NAME)
    memo(ckpt)
    assert memo.computed == 0
