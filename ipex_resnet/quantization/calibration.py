"""Calibration sets: the user's own images, a stable fingerprint of them, and a held-out split.

A calibration source is a folder (searched recursively for image files, by suffix) or an iterable
of images (paths, bytes, PIL images, numpy arrays, tensors: whatever the classifier's preprocess
accepts). At most :data:`DEFAULT_COUNT` images are used, chosen evenly across the sorted folder so
that a folder per class contributes every class. :func:`split` puts some aside as held-out images
for the accuracy report; those are never used for calibration.

The fingerprint (:func:`fingerprint`) hashes the images' bytes, not their names or order, so the
cache key changes exactly when the calibration data does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ipex_resnet.errors import ConfigError
from ipex_resnet.imaging.decode import IMAGE_EXTENSIONS

#: Suffixes Pillow decodes (compared case-insensitively); anything else in the folder is ignored.
#: Images used at most: enough for stable per-tensor ranges (NNCF's default subset is 300 too).
DEFAULT_COUNT = 300
#: Share of the images held out for the accuracy report, and its bounds.
HELD_OUT_FRACTION = 0.25
MAX_HELD_OUT = 100
BATCH_SIZE = 32

HOW = (
    "pass calibration=DIR (a folder of images like the ones you will classify, e.g. a few hundred "
    "photos) or a list of images; on the command line --calibration DIR"
)


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """The images chosen from a source, and their fingerprint."""

    items: tuple[Any, ...]  #: paths or in-memory images, at most ``count``
    digest: str  #: :func:`fingerprint` of ``items``
    source: str  #: a human description, e.g. "calib/ (300 of 1,204 images)"

    def __len__(self) -> int:
        return len(self.items)

    def split(self, held_out: int | float | None = None) -> tuple[list[Any], list[Any]]:
        return split(self.items, held_out)


def find_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted; hidden files and other suffixes skipped)."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise ConfigError(f"calibration folder {root} does not exist; {HOW}")
    if not root.is_dir():
        raise ConfigError(f"calibration {root} is not a folder; {HOW}")
    found = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not found:
        kind = "is empty" if not any(root.iterdir()) else f"has no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        raise ConfigError(f"calibration folder {root} {kind}; {HOW}")
    return found


def _evenly(items: Sequence[Any], count: int) -> list[Any]:
    if len(items) <= count:
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in idx]


def collect(
    source: str | os.PathLike | Iterable[Any] | None,
    count: int = DEFAULT_COUNT,
    *,
    file_digest: Callable[[str | os.PathLike], str] | None = None,
) -> CalibrationSet:
    """The calibration set from a folder or an iterable of images (at most ``count`` images).
    ``file_digest``: a file's SHA-256 (hex) by other means than reading it, e.g. a memo (see
    :func:`fingerprint`)."""
    if count < 2:
        raise ConfigError(f"calibration needs at least 2 images (got count={count})")
    if source is None:
        raise ConfigError(f"INT8 needs calibration images: {HOW}")
    if isinstance(source, (str, os.PathLike)):
        found = find_images(source)
        items = _evenly(found, count)
        what = f"{os.fspath(source)} ({len(items):,} of {len(found):,} images)"
    elif isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
        raise ConfigError(f"calibration must be a folder or a list of images, got {type(source).__name__}; {HOW}")
    else:
        if isinstance(source, Sequence):
            items = _evenly(source, count)
        else:  # a generator: take the first ``count``, never exhaust an endless stream
            items = list(itertools.islice(source, count))
        what = f"{len(items):,} images given"
    if len(items) < 2:
        raise ConfigError(f"calibration needs at least 2 images, got {len(items)}; {HOW}")
    return CalibrationSet(items=tuple(items), digest=fingerprint(items, file_digest=file_digest), source=what)


def _item_bytes(item: Any) -> bytes:
    """The bytes that identify one image: file contents for paths, pixels for in-memory images."""
    if isinstance(item, (str, os.PathLike)):
        return Path(item).read_bytes()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if hasattr(item, "read"):  # a file object: hash its contents, leave it where it was
        pos = item.tell() if hasattr(item, "tell") else None
        data = item.read()
        if pos is not None:
            item.seek(pos)
        return data
    if hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # PIL image
        return f"{item.mode}{item.size}".encode() + item.tobytes()
    if hasattr(item, "detach"):  # torch tensor
        item = item.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(item))
    return f"{arr.dtype}{arr.shape}".encode() + arr.tobytes()


def fingerprint(items: Iterable[Any], *, file_digest: Callable[[str | os.PathLike], str] | None = None) -> str:
    """SHA-256 over the sorted per-image digests: independent of order and file names. ``file_digest``
    gives a file's SHA-256 (the same hex as hashing its bytes), e.g. from a memo, instead of reading it."""
    digests = sorted(
        file_digest(i)
        if file_digest is not None and isinstance(i, (str, os.PathLike))
        else hashlib.sha256(_item_bytes(i)).hexdigest()
        for i in items
    )
    h = hashlib.sha256()
    for d in digests:
        h.update(d.encode())
    return h.hexdigest()


def split(items: Sequence[Any], held_out: int | float | None = None) -> tuple[list[Any], list[Any]]:
    """``(calibration, held_out)``: disjoint, held-out images spread evenly over ``items``.

    ``held_out`` is a count (int), a share (float in (0, 1)), or ``None`` for
    :data:`HELD_OUT_FRACTION` of the images, at least 1 and at most :data:`MAX_HELD_OUT`.
    """
    n = len(items)
    if n < 2:
        raise ConfigError(f"need at least 2 images to split into calibration and held-out, got {n}; {HOW}")
    if held_out is None:
        k = min(MAX_HELD_OUT, max(1, round(n * HELD_OUT_FRACTION)))
    elif isinstance(held_out, float):
        if not 0 < held_out < 1:
            raise ConfigError(f"held_out share must be between 0 and 1, got {held_out}")
        k = max(1, round(n * held_out))
    else:
        k = int(held_out)
    if not 1 <= k <= n - 1:
        raise ConfigError(
            f"held_out must leave at least one image on each side of the split (got {held_out} of {n} images)"
        )
    # the centre of each of k equal stretches: distinct, spread over every class of a sorted folder
    chosen = {(2 * i + 1) * n // (2 * k) for i in range(k)}
    calib = [x for i, x in enumerate(items) if i not in chosen]
    held = [x for i, x in enumerate(items) if i in chosen]
    return calib, held


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def batches(
    items: Sequence[Any],
    preprocess: Callable[[Any], Any],
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool | None = None,
    desc: str = "calibration images",
) -> list[np.ndarray]:
    """Preprocess ``items`` into float32 NCHW numpy batches, with a tqdm progress bar.

    ``preprocess`` is the classifier's (one image -> 3xHxW array or tensor). ``progress=None`` shows
    the bar only on a terminal. A bad image raises the preprocess's error, which names it.
    """
    from tqdm.auto import tqdm

    out: list[np.ndarray] = []
    current: list[np.ndarray] = []
    for item in tqdm(items, desc=desc, unit="img", disable=(None if progress is None else not progress), leave=False):
        arr = _as_array(preprocess(item))
        if arr.ndim != 3 or arr.shape[0] != 3:
            raise ConfigError(f"preprocess returned shape {arr.shape}, expected 3xHxW")
        current.append(arr)
        if len(current) == batch_size:
            out.append(np.stack(current))
            current = []
    if current:
        out.append(np.stack(current))
    return out


__all__ = [
    "BATCH_SIZE",
    "CalibrationSet",
    "DEFAULT_COUNT",
    "HELD_OUT_FRACTION",
    "MAX_HELD_OUT",
    "batches",
    "collect",
    "find_images",
    "fingerprint",
    "split",
]
