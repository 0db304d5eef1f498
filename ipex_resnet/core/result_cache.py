"""An opt-in cache of top-k results for repeated images (off by default).

Two ways to key an image, both always together with the classifier's identity (its artifact key, or for
a classifier built in memory its plan and the instance itself, plus the preprocessing), so that a result
is never served for another model, weights, precision, preset or preprocessing mode:

- ``exact``: SHA-256 of the image's bytes. A hit decodes nothing.
- ``perceptual``: a 64-bit perceptual hash (``imagehash.phash``, DCT of a 32x32 grey thumbnail) of the
  image decoded by the bounded decoder (format allow-list, pixel limit, truncation) at reduced JPEG
  scale; an entry within :data:`DEFAULT_THRESHOLD` bits (Hamming distance) is a hit. Re-encoded, resized
  or recompressed copies hit; the threshold is chosen from measurements (``bench/result_cache_threshold.py``,
  ``docs/result-cache.json``).

The store is an LRU bounded in entries and bytes, locked for use from several threads. A result is
stored only after its image decoded and was classified: an image that fails to decode raises its
:class:`~ipex_resnet.errors.ImageError` unchanged and leaves nothing behind. A request for more classes
than an entry holds is a miss (recomputed, then stored with the larger k).
"""

from __future__ import annotations

import collections
import copy
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ipex_resnet.errors import ConfigError, ImageError

if TYPE_CHECKING:
    from PIL import Image

    from ipex_resnet.core.policy import Plan
    from ipex_resnet.imaging import Preprocessor

MODES = ("exact", "perceptual")
DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 64 * 2**20
#: Hamming distance (of 64 bits) up to which two perceptual hashes are the same image. Evidence: among
#: the 200 distinct shared photos (19,900 pairs) the closest pair is 14 bits apart (1st percentile 22);
#: every photo re-encoded at JPEG quality 75 and resized to 80% is at most 4 bits from its original (see
#: docs/result-cache.json): 4..13 separate them; 8 leaves a margin on both sides.
DEFAULT_THRESHOLD = 8
HASH_SIZE = 8  # imagehash's default: 8x8 low frequencies of a 32x32 DCT -> 64 bits
THUMB_SHORT_SIDE = 64  # a JPEG is decoded at 1/2..1/8 scale while its short side stays at least this
INSTALL_HINT = "pip install 'ipex_resnet[resultcache]'"


def _imagehash() -> Any:
    from ipex_resnet.util.deps import require

    return require("imagehash", f"the perceptual result cache needs imagehash: {INSTALL_HINT}")


@dataclass(frozen=True)
class Key:
    """Where one image's result lives: the classifier's identity and the image's hash (``digest`` for
    exact, the 64-bit ``phash`` for perceptual)."""

    identity: str
    digest: str | None = None
    phash: int | None = None


@dataclass
class _Entry:
    top: list[dict]
    k: int
    nbytes: int
    phash: int | None


class Cacheable(Protocol):
    """What :func:`identity` reads of a classifier (:class:`~ipex_resnet.core.classifier.Classifier`)."""

    @property
    def plan(self) -> Plan: ...

    @property
    def artifact(self) -> dict | None: ...

    @property
    def instance_id(self) -> str: ...

    @property
    def preprocessor(self) -> Preprocessor: ...

    @property
    def categories(self) -> Sequence[str]: ...


def identity(clf: Cacheable) -> str:
    """A string that differs whenever results could: the artifact entry (its key names the model, every
    weight's hash, engine, precision, ISA and library versions) or, for a classifier built in memory,
    its plan and the instance (equal plans may hold different weights); plus the preprocessing (preset
    and fast/exact mode) and the labels."""
    plan = clf.plan
    art = clf.artifact or {}
    if art.get("entry"):
        who = f"artifact={os.path.basename(str(art['entry']).rstrip('/'))}"
    else:
        who = f"instance={clf.instance_id}"
    pre = clf.preprocessor
    pre_id = f"{pre.describe()}|{pre.mode}"
    cats = hashlib.sha256("\n".join(clf.categories).encode()).hexdigest()[:16]
    raw = "|".join(
        [
            who,
            f"model={plan.model}",
            f"weights={plan.weights}",
            f"backend={plan.backend}",
            f"precision={plan.precision}",
            f"memory_format={plan.memory_format}",
            f"options={sorted(dict(plan.options).items())}",
            f"pre={pre_id}",
            f"categories={cats}",
        ]
    )
    return hashlib.sha256(raw.encode()).hexdigest()


def perceptual_hash(image: Image.Image) -> int:
    """The 64-bit perceptual hash (imagehash.phash) of a PIL image, as an int."""
    h = _imagehash().phash(image, hash_size=HASH_SIZE)
    return int("".join("1" if b else "0" for b in h.hash.flatten()), 2)


Check = Callable[[int, int], None]  # a header check: (width, height) -> raises ImageError to refuse


def decode_for_hash(src: object, *, max_pixels: int, name: str, check: Check | None = None) -> Image.Image:
    """Decode ``src`` with the bounded decoder at the smallest JPEG scale a hash needs (ImageError on a
    bad image, as for classification)."""
    from ipex_resnet.imaging import decode

    return decode(src, max_pixels=max_pixels, name=name, min_short_side=THUMB_SHORT_SIDE, check=check).image


def _size_of(top: list[dict]) -> int:
    return 200 + sum(150 + len(str(r.get("label", ""))) for r in top)


class ResultCache:
    """An LRU of top-k results keyed by classifier identity + image (see the module docstring).

    ``listeners``: callables ``(event)`` with event ``"hit"``, ``"miss"`` or ``"eviction"`` (the service
    counts them in Prometheus). :attr:`stats` holds the same counts.
    """

    def __init__(
        self,
        mode: str = "exact",
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        threshold: int = DEFAULT_THRESHOLD,
    ) -> None:
        mode = str(mode).lower()
        if mode not in MODES:
            raise ConfigError(f"result cache mode {mode!r} unknown; use {' or '.join(MODES)}")
        if max_entries < 1 or max_bytes < 1:
            raise ConfigError("the result cache needs at least 1 entry and 1 byte")
        if not 0 <= threshold <= HASH_SIZE * HASH_SIZE:
            raise ConfigError(f"perceptual threshold must be from 0 to {HASH_SIZE * HASH_SIZE}, got {threshold}")
        if mode == "perceptual":
            _imagehash()  # fail at set-up, with the install hint, not on the first image
        self.mode, self.max_entries, self.max_bytes, self.threshold = mode, max_entries, max_bytes, threshold
        self._lock = threading.Lock()
        self._lru: collections.OrderedDict[tuple, _Entry] = collections.OrderedDict()
        self._bytes = 0
        self.stats = {"hit": 0, "miss": 0, "eviction": 0}
        self.listeners: list[Callable[[str], None]] = []

    # -- description ------------------------------------------------------------------------------
    def describe(self) -> str:
        how = (
            "exact: SHA-256 of the image bytes (a hit decodes nothing)"
            if self.mode == "exact"
            else f"perceptual: 64-bit pHash of the decoded image, Hamming distance <= {self.threshold}"
        )
        return (
            f"result cache on, keyed by the model's artifact key/identity + {how}; LRU of at most "
            f"{self.max_entries} entries / {self.max_bytes / 2**20:.0f} MiB"
        )

    def __len__(self) -> int:
        return len(self._lru)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def _event(self, what: str, n: int = 1) -> None:
        self.stats[what] += n
        for fn in self.listeners:
            for _ in range(n):
                fn(what)

    # -- keys -------------------------------------------------------------------------------------
    def key_for_bytes(self, ident: str, data: bytes, *, name: str, max_pixels: int, check: Check | None = None) -> Key:
        """The key of an image given as bytes; perceptual mode decodes (ImageError propagates)."""
        if self.mode == "exact":
            return Key(ident, digest=hashlib.sha256(data).hexdigest())
        return Key(ident, phash=perceptual_hash(decode_for_hash(data, max_pixels=max_pixels, name=name, check=check)))

    def key_for_image(
        self, ident: str, image: Image.Image, *, name: str, max_pixels: int, check: Check | None = None
    ) -> Key | None:
        """The key of a PIL image: perceptual mode only (exact mode has no bytes to hash: None)."""
        if self.mode == "exact":
            return None
        return Key(ident, phash=perceptual_hash(decode_for_hash(image, max_pixels=max_pixels, name=name, check=check)))

    def _slot(self, key: Key) -> tuple:
        return (key.identity, key.digest) if key.digest is not None else (key.identity, "p", key.phash)

    # -- lookup and store -------------------------------------------------------------------------
    def _find(self, key: Key, k: int) -> tuple | None:
        slot = self._slot(key)
        e = self._lru.get(slot)
        if e is not None and e.k >= k:
            return slot
        if key.phash is None or self.threshold == 0:
            return None
        best, best_d = None, self.threshold + 1
        for s, e in self._lru.items():
            if s[0] == key.identity and e.phash is not None and e.k >= k:
                d = (e.phash ^ key.phash).bit_count()
                if d < best_d:
                    best, best_d = s, d
        return best

    def get(self, key: Key | None, k: int) -> list[dict] | None:
        """The cached top-``k`` (a copy), or None (counted as a miss)."""
        if key is None:
            return None
        with self._lock:
            slot = self._find(key, k)
            if slot is None:
                self._event("miss")
                return None
            self._lru.move_to_end(slot)
            top = self._lru[slot].top[:k]
            self._event("hit")
        return copy.deepcopy(top)

    def put(self, key: Key | None, top: list[dict], k: int) -> list[dict]:
        """Store ``top`` (the result for ``k`` classes); returns what is now cached for the key, cut to
        ``k`` (an equal-or-larger entry stored meanwhile by a concurrent request wins, so that identical
        requests get identical answers)."""
        if key is None:
            return top
        with self._lock:
            slot = self._slot(key)
            old = self._lru.get(slot)
            if old is not None and old.k >= k:
                self._lru.move_to_end(slot)
                return copy.deepcopy(old.top[:k])
            if old is not None:
                self._bytes -= old.nbytes
                del self._lru[slot]
            e = _Entry(copy.deepcopy(top), k, _size_of(top), key.phash)
            if e.nbytes > self.max_bytes:
                return top
            self._lru[slot] = e
            self._bytes += e.nbytes
            evicted = 0
            while len(self._lru) > self.max_entries or self._bytes > self.max_bytes:
                _, gone = self._lru.popitem(last=False)
                self._bytes -= gone.nbytes
                evicted += 1
            if evicted:
                self._event("eviction", evicted)
        return top

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self._bytes = 0


def make(spec: str | bool | ResultCache | None, **kwargs: Any) -> ResultCache | None:
    """``None``/``False``/``"off"`` -> None; ``"exact"``/``"perceptual"`` -> a new cache; a cache as is."""
    if spec is None or spec is False or (isinstance(spec, str) and spec.lower() in ("off", "none", "")):
        return None
    if isinstance(spec, ResultCache):
        return spec
    if isinstance(spec, str):
        return ResultCache(spec, **kwargs)
    raise ConfigError(f"result_cache must be 'exact', 'perceptual', 'off' or a ResultCache, got {spec!r}")


def key_for_input(
    cache: ResultCache, ident: str, src: object, *, name: str, max_pixels: int, check: Check | None = None
) -> tuple[Key | None, object]:
    """``(key, source to preprocess)`` for one input of ``Classifier.predict``: bytes and paths (read
    once) are keyed in both modes, PIL images in perceptual mode; anything else is not cached (key None).
    A decode error raises ImageError; an unreadable path is left to the preprocessor to report."""
    from PIL import Image

    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            return None, src
        return cache.key_for_bytes(ident, data, name=name, max_pixels=max_pixels, check=check), data
    if isinstance(src, (str, os.PathLike)):
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError:
            return None, src  # the preprocessor names the problem (no such file, a directory, ...)
        if not data:
            return None, src
        return cache.key_for_bytes(ident, data, name=name, max_pixels=max_pixels, check=check), data
    if isinstance(src, Image.Image):
        return cache.key_for_image(ident, src, name=name, max_pixels=max_pixels, check=check), src
    return None, src


__all__ = [
    "DEFAULT_THRESHOLD",
    "MODES",
    "Cacheable",
    "Check",
    "ImageError",
    "Key",
    "ResultCache",
    "decode_for_hash",
    "identity",
    "key_for_input",
    "make",
    "perceptual_hash",
]
