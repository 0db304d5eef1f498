"""The artifact cache: hit, miss, corrupt entry, version change, weights change, concurrent writers,
an unsafe root, a comma in the root's path; and that a warm start reads no torchvision (the entry
carries what it needs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_backend

from ipex_resnet.core.cache import ArtifactCache, CacheWarning, entry_name

KEY = {"model": "m", "weights": "w1", "engine": "onnxruntime", "precision": "fp32", "versions": {"x": "1"}}


def _builder(calls: list):
    def build(tmp: Path) -> dict:
        calls.append(tmp)
        (tmp / "model.bin").write_bytes(b"compiled" * 100)
        return {"model_name": "m"}

    return build


def _load(entry: Path, meta: dict) -> bytes:
    return (entry / "model.bin").read_bytes()


def test_miss_then_hit(tmp_path):
    cache, calls = ArtifactCache(tmp_path), []
    value, meta, hit = cache.get_or_build(KEY, _builder(calls), _load)
    assert (value, hit, len(calls)) == (b"compiled" * 100, False, 1)
    assert meta["files"]["model.bin"] and meta["key"] == KEY and meta["model_name"] == "m"
    value, meta, hit = cache.get_or_build(KEY, _builder(calls), _load)
    assert (hit, len(calls)) == (True, 1)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # nothing half-written left


@pytest.mark.parametrize("change", ["versions", "weights", "precision"])
def test_a_key_change_is_a_new_entry(tmp_path, change):
    cache, calls = ArtifactCache(tmp_path), []
    cache.get_or_build(KEY, _builder(calls), _load)
    other = {**KEY, change: {"x": "2"} if change == "versions" else "other"}
    assert entry_name(other) != entry_name(KEY)
    _, _, hit = cache.get_or_build(other, _builder(calls), _load)
    assert not hit and len(calls) == 2


def test_stale_entry_under_the_same_name_is_rebuilt(tmp_path):
    cache, calls = ArtifactCache(tmp_path), []
    cache.get_or_build(KEY, _builder(calls), _load)
    meta_path = tmp_path / entry_name(KEY) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"] = {**KEY, "versions": {"x": "0"}}  # an entry written for another version
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(CacheWarning, match="stale"):
        _, _, hit = cache.get_or_build(KEY, _builder(calls), _load)
    assert not hit and len(calls) == 2


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "meta"])
def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, damage):
    cache, calls = ArtifactCache(tmp_path), []
    cache.get_or_build(KEY, _builder(calls), _load)
    entry = tmp_path / entry_name(KEY)
    f = entry / "model.bin"
    if damage == "flip":
        data = bytearray(f.read_bytes())
        data[10] ^= 0xFF
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:50])
    elif damage == "delete":
        f.unlink()
    else:
        (entry / "meta.json").write_text("{not json")
    with pytest.warns(CacheWarning, match="rebuilding"):
        value, _, hit = cache.get_or_build(KEY, _builder(calls), _load)
    assert value == b"compiled" * 100 and not hit and len(calls) == 2


def test_an_entry_that_fails_to_load_is_rebuilt_once(tmp_path):
    cache, calls = ArtifactCache(tmp_path), []
    cache.get_or_build(KEY, _builder(calls), _load)
    attempts = []

    def flaky_load(entry, meta):
        attempts.append(entry)
        if len(attempts) == 1:
            raise RuntimeError("library cannot read this build")
        return _load(entry, meta)

    with pytest.warns(CacheWarning, match="failed to load"):
        value, _, hit = cache.get_or_build(KEY, _builder(calls), flaky_load)
    assert value == b"compiled" * 100 and len(calls) == 2 and not hit


def test_unsafe_root_is_not_loaded_from(tmp_path):
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o777)  # anyone could plant compiled code here
    calls = []
    with pytest.warns(CacheWarning, match="writable by others"):
        value, _, hit = ArtifactCache(root).get_or_build(KEY, _builder(calls), _load)
    assert value == b"compiled" * 100 and not hit
    assert list(root.iterdir()) == []  # built in a throwaway directory, nothing published


_WRITER = """
import sys, time
from pathlib import Path
from ipex_resnet.core.cache import ArtifactCache
key = {"model": "m", "weights": "w1", "engine": "onnxruntime", "precision": "fp32", "versions": {"x": "1"}}
def build(tmp):
    marks = Path(sys.argv[2])
    (marks / f"built-{sys.argv[3]}").write_text("x")
    deadline = time.monotonic() + 60
    while not (marks / "go").exists() and time.monotonic() < deadline:  # the test says when to finish
        time.sleep(0.01)
    (tmp / "model.bin").write_bytes(b"compiled" * 100)
    return {}
value, meta, hit = ArtifactCache(Path(sys.argv[1])).get_or_build(key, build, lambda e, m: (e / "model.bin").read_bytes())
print(hit, len(value))
"""


def _blocked_on_a_lock(pids: set[int]) -> set[int]:
    """The pids among ``pids`` that wait for a file lock (``->`` lines of /proc/locks)."""
    waiting = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:
            waiting.add(int(fields[fields.index("->") + 4]))
    return waiting & pids


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_concurrent_writers_build_once(tmp_path):
    """Writer 0 holds the build lock until the test lets it go; writers 1 and 2 are seen blocked on
    the lock (/proc/locks) before that, and then find writer 0's entry instead of building."""
    root, marks = tmp_path / "cache", tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def start(i):
        return subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(marks), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    procs = [start(0)]
    _wait_for(lambda: (marks / "built-0").exists() or procs[0].poll() is not None, "writer 0 to start building")
    procs += [start(1), start(2)]
    _wait_for(
        lambda: (
            _blocked_on_a_lock({p.pid for p in procs[1:]}) == {p.pid for p in procs[1:]}
            or any(p.poll() is not None for p in procs)
        ),
        "writers 1 and 2 to block on the lock",
    )
    (marks / "go").write_text("")
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert [o[0].split()[0] for o in outs] == ["False", "True", "True"]  # one built, two waited and found it
    assert sorted(m.name for m in marks.iterdir()) == ["built-0", "go"]
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == [entry_name(KEY)]


@pytest.mark.slow
def test_weights_change_rebuilds_and_warm_start_skips_torchvision(checkpoint, tmp_path, photos):
    """Through load(): a second load is a hit; other weights are a miss; a warm ONNX Runtime start
    in a fresh process imports no torchvision (categories and preset come from the entry)."""
    import torch

    import ipex_resnet

    require_backend("onnxruntime")
    saved = os.environ["IPEX_RESNET_CACHE_DIR"]
    os.environ["IPEX_RESNET_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        a = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="onnxruntime")
        b = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="onnxruntime")
        assert (a.artifact["hit"], b.artifact["hit"]) == (False, True)
        sd = torch.load(checkpoint, weights_only=True)
        sd["fc.bias"] = sd["fc.bias"] + 1.0
        other = tmp_path / "other.pth"
        torch.save(sd, other)
        c = ipex_resnet.load("resnet18", weights=str(other), backend="onnxruntime")
        assert c.artifact["hit"] is False and c.artifact["entry"] != a.artifact["entry"]
        x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
        assert np.allclose(c(x) - a(x), 1.0, atol=1e-3)  # the new bias is in the new artifact
        code = (
            "import sys, ipex_resnet; c = ipex_resnet.load('resnet18', weights=sys.argv[1], backend='onnxruntime'); "
            "r = c.predict([sys.argv[2]], topk=1); print(c.artifact['hit'], 'torchvision' in sys.modules, r[0][0]['label'])"
        )
        env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.run(
            [sys.executable, "-c", code, str(checkpoint), str(photos[0])],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        hit, tv, label = proc.stdout.split(maxsplit=2)
        assert hit == "True" and tv == "False"
        assert label.strip() == a.predict([photos[0]], topk=1)[0][0]["label"]
    finally:
        os.environ["IPEX_RESNET_CACHE_DIR"] = saved


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "inductor"])
def test_a_comma_in_the_cache_path_is_just_a_path(backend, tmp_path, monkeypatch):
    """A cache folder whose path has a comma (OpenVINO's converter splits a path string on commas) is
    still where each engine's artifact (IR, ONNX, AOTInductor package) is built, found again and run from."""
    import ipex_resnet

    require_backend(backend)
    root = tmp_path / "models, v2" / "cache"
    monkeypatch.setenv("IPEX_RESNET_CACHE_DIR", str(root))
    first = ipex_resnet.load("resnet18", weights="none", backend=backend, precision="fp32", streams=1)
    again = ipex_resnet.load("resnet18", weights="none", backend=backend, precision="fp32", streams=1)
    assert (first.artifact["hit"], again.artifact["hit"]) == (False, True)
    entry = Path(again.artifact["entry"])
    assert entry.is_relative_to(root) and entry.is_dir() and any(entry.iterdir())
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    a, b = np.asarray(first(x)), np.asarray(again(x))
    assert a.shape == (2, 1000) and np.isfinite(a).all() and np.allclose(a, b, atol=1e-4)
