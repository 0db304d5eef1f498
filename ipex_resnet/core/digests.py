"""SHA-256 of files, remembered across loads by their stat (as git's index does): an INT8 load hashes its
calibration and labelled images, and a checkpoint its weights, once per change of the file, not once per load.

A file's digest is reused only while its size, modification time, change time, inode and device are all
the same; any write to the file changes its change time (which no user tool can set back), so a changed
file is hashed again. The memo lives beside the artifacts (``digests.json`` in the cache root) and is
trusted as the artifacts are: only in a root that is ours and not writable by others; elsewhere, or with
the cache off, every file is hashed.

:class:`FileDigests` is for one thread (one load); processes share the memo through atomic rewrites (the
last writer wins, and a lost entry only costs one more hash).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ipex_resnet.core.cache import enabled, file_sha256, root
from ipex_resnet.util.files import write_json_atomic

MEMO_NAME = "digests.json"
MAX_ENTRIES = 20_000  # a bounded memo: past it the oldest entries go


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class FileDigests:
    """``digests(path) -> hex sha256``, from the memo while the file is unchanged. ``computed``: how many
    files this instance really hashed."""

    def __init__(self, memo: Path | None):
        self.memo = memo
        self.computed = 0
        self._entries: dict[str, list] = {}
        self._changed = False
        if memo is not None:
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(memo.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded

    def __call__(self, path: str | os.PathLike) -> str:
        p = Path(path).resolve()
        before = _signature(p.stat())
        known = self._entries.get(str(p))
        if isinstance(known, list) and known[:-1] == before:
            return str(known[-1])
        sha = file_sha256(p)
        self.computed += 1
        if _signature(p.stat()) == before:  # not written to while it was read
            self._entries.pop(str(p), None)
            self._entries[str(p)] = [*before, sha]
            self._changed = True
        return sha

    def save(self) -> None:
        if self.memo is None or not self._changed:
            return
        entries = self._entries
        if len(entries) > MAX_ENTRIES:
            entries = dict(list(entries.items())[-MAX_ENTRIES:])
        with contextlib.suppress(OSError):
            write_json_atomic(self.memo, entries)
        self._changed = False


def _memo_path() -> Path | None:
    """The memo file, where the cache is on and its root is ours and closed to others; else None."""
    if not enabled():
        return None
    base = root()
    try:
        st = base.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return base / MEMO_NAME


@contextlib.contextmanager
def file_digests() -> Iterator[FileDigests]:
    """A :class:`FileDigests` on the cache's memo, saved on the way out."""
    digests = FileDigests(_memo_path())
    try:
        yield digests
    finally:
        digests.save()


__all__ = ["FileDigests", "file_digests"]
