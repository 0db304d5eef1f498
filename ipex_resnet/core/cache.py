"""The artifact cache: compile once, start fast.

Each entry is a directory ``<root>/<engine>-<precision>-<model>-<digest>`` holding an engine's
compiled artifact and ``meta.json`` (the key, a SHA-256 of every file, the preprocessing preset, the
categories, and what the build reported, e.g. the INT8 accuracy report). ``digest`` hashes the key:
model, a hash of the weights, engine, precision, library versions, the CPU model and ISA level, and
for INT8 the calibration set.

Safety: entries are only ever read from the cache root this process resolves for itself
(``IPEX_RESNET_CACHE_DIR`` or ``~/.cache/ipex_resnet/artifacts``; never a path a request names), the
root must belong to this user and not be writable by others, and a file whose hash differs from
``meta.json`` is never loaded. Writes are atomic: an entry is built in a private temporary directory
and renamed into place; concurrent builders of one key take turns on a lock file and the second one
finds the first one's entry. A corrupt or unreadable entry is rebuilt with a :class:`CacheWarning`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

FORMAT = 1
ENV_CACHE_DIR = "IPEX_RESNET_CACHE_DIR"
ENV_NO_CACHE = "IPEX_RESNET_NO_CACHE"
META = "meta.json"


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupt, stale, unsafe) and was rebuilt or bypassed."""


def root() -> Path:
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "ipex_resnet" / "artifacts"


def enabled() -> bool:
    return os.environ.get(ENV_NO_CACHE, "").strip().lower() in ("", "0", "false", "no")


def _safe_root(path: Path) -> Path | None:
    """Create the root (0700) and check it is ours and not writable by others; None when unsafe."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError as exc:
        warnings.warn(
            f"artifact cache {path} is unusable ({exc.strerror or exc}); compiling in memory",
            CacheWarning,
            stacklevel=3,
        )
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        warnings.warn(
            f"artifact cache {path} belongs to another user or is writable by others; "
            "not loading compiled code from it (compiling in memory)",
            CacheWarning,
            stacklevel=3,
        )
        return None
    return path


def digest(key: Mapping) -> str:
    return hashlib.sha256(json.dumps(dict(key), sort_keys=True, default=str).encode()).hexdigest()[:20]


def entry_name(key: Mapping) -> str:
    slug = "-".join(
        re.sub(r"[^a-z0-9_.]+", "_", str(key.get(k, "?")).lower())[:40] for k in ("engine", "precision", "model")
    )
    return f"{slug}-{digest(key)}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): file_sha256(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != META and "ov_cache" not in p.parts
    }


@contextlib.contextmanager
def _lock(path: Path):
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_meta(entry: Path, key: Mapping) -> dict | None:
    """The entry's metadata when it is complete, matches ``key`` and every file hashes as recorded."""
    try:
        meta = json.loads((entry / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable {META}: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("key") != json.loads(json.dumps(dict(key), default=str)):
        raise ValueError("its key does not match (stale entry)")
    for name, sha in meta.get("files", {}).items():
        f = entry / name
        if not f.is_file():
            raise ValueError(f"{name} is missing")
        if file_sha256(f) != sha:
            raise ValueError(f"{name} does not match its recorded SHA-256 (corrupt)")
    return meta


class ArtifactCache:
    def __init__(self, directory: Path | None = None):
        self.directory = directory if directory is not None else root()

    def lookup(self, key: Mapping) -> tuple[Path, dict] | None:
        """(entry, meta) for a valid entry, None on a miss; a bad entry is removed with a warning."""
        base = _safe_root(self.directory)
        if base is None:
            return None
        entry = base / entry_name(key)
        if not entry.exists():
            return None
        try:
            meta = read_meta(entry, key)
        except ValueError as exc:
            warnings.warn(f"artifact cache entry {entry.name}: {exc}; rebuilding it", CacheWarning, stacklevel=3)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return (entry, meta) if meta is not None else None

    def get_or_build(
        self, key: Mapping, build: Callable[[Path], dict], load: Callable[[Path, dict], object]
    ) -> tuple[object, dict, bool]:
        """``(loaded, meta, hit)``. ``build(tmpdir) -> meta extras`` writes the artifact files;
        ``load(entry, meta)`` turns an entry into what the caller wants. A load that fails on a cached
        entry (corrupt in a way hashes cannot see, or from another library build) rebuilds it once."""
        base = _safe_root(self.directory)
        if base is None:  # unsafe or unusable root: build in a throwaway directory
            tmp = Path(tempfile.mkdtemp(prefix="ipex_resnet_nocache_"))
            try:
                meta = {"key": dict(key), **build(tmp)}
                return load(tmp, meta), meta, False
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        entry = base / entry_name(key)
        found = self.lookup(key)
        if found is not None:
            try:
                return load(*found), found[1], True
            except Exception as exc:
                warnings.warn(
                    f"artifact cache entry {entry.name} failed to load "
                    f"({type(exc).__name__}: {str(exc)[:200]}); rebuilding it",
                    CacheWarning,
                    stacklevel=2,
                )
                shutil.rmtree(entry, ignore_errors=True)
        with _lock(base / f".{entry.name}.lock"):
            found = self.lookup(key)  # another process may have built it while we waited
            if found is None:
                meta = self._publish(base, entry, key, build)
                return load(entry, meta), meta, False
        return load(*found), found[1], True

    @staticmethod
    def _publish(base: Path, entry: Path, key: Mapping, build: Callable[[Path], dict]) -> dict:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=base))
        try:
            extras = build(tmp) or {}
            meta = {
                "format": FORMAT,
                "key": json.loads(json.dumps(dict(key), default=str)),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **extras,
                "files": _files(tmp),
            }
            (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
            shutil.rmtree(entry, ignore_errors=True)
            os.rename(tmp, entry)
            return meta
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["ArtifactCache", "CacheWarning", "ENV_CACHE_DIR", "ENV_NO_CACHE", "digest", "enabled", "root"]
