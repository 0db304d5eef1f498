"""The result cache's flow, written once for every caller: look an input up; on a miss preprocess it and
let the caller run the model on all the misses together (in a batch, on a micro-batcher, ...); then store.

- :meth:`ResultFlow.look_up`: one input -> a :class:`Hit` (its cached top-k: no inference; in exact mode
  not even decoded) or a :class:`Miss` (its preprocessed array and the key its result is stored under).
  A bad image raises its :class:`~ipex_resnet.errors.ImageError` and leaves nothing behind.
- :func:`to_run`: the arrays the model must run for a list of looked-up items (misses, and plain arrays
  that were never looked up, such as preprocessed tensors sent as they are).
- :meth:`ResultFlow.store`: the items with the model's answers for :func:`to_run`'s arrays -> the top-k
  per item, every miss's answer stored.

:meth:`Classifier.predict <ipex_resnet.core.classifier.Classifier.predict>`, bulk classification
(``apps/bulk.py``) and the service (``serve/``) all go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ipex_resnet.core.result_cache import Cacheable, Key, ResultCache, identity, key_for_input

Top = list[dict]  # one input's top-k rows: {"label", "index", "score"}, best first


class Classifies(Cacheable, Protocol):
    """What the flow needs of a classifier: its result-cache identity's parts, its preprocessing and
    the header check the perceptual hash's decode applies (:class:`~ipex_resnet.core.classifier.Classifier`)."""

    def preprocess(self, image: object, *, name: str | None = None) -> Any: ...

    def hash_check(self, name: str) -> Callable[[int, int], None] | None: ...


@dataclass(frozen=True)
class Hit:
    """A result-cache hit standing in for an input: its top-k rows; the model need not run."""

    top: Top


@dataclass(frozen=True)
class Miss:
    """A result-cache miss: the input's preprocessed array and the key its result is stored under (None:
    an input that cannot be keyed, such as an unreadable path; its result is not stored)."""

    array: Any
    key: Key | None


class ResultFlow:
    """Look up -> (the caller runs the misses) -> store, for one classifier and one cache. The classifier's
    identity is taken once, when the flow is made."""

    def __init__(self, cache: ResultCache, clf: Classifies):
        self.cache = cache
        self.identity = identity(clf)
        self._clf = clf

    def look_up(self, src: object, *, name: str, topk: int) -> Hit | Miss:
        """One input (bytes, a path, a PIL image, ...) -> :class:`Hit` or :class:`Miss` (ImageError on a bad image)."""
        clf = self._clf
        key, src = key_for_input(
            self.cache,
            self.identity,
            src,
            name=name,
            max_pixels=clf.preprocessor.max_pixels,
            check=clf.hash_check(name),
        )
        top = self.cache.get(key, topk)
        if top is not None:
            return Hit(top)
        return Miss(clf.preprocess(src, name=name), key)

    def store(self, items: Sequence[object], tops: Sequence[Top], topk: int) -> list[Top]:
        """The top-k per item: a hit's own; in order, one of ``tops`` (the answers for :func:`to_run`'s
        arrays) for every other item, stored for a miss (what is cached for its key comes back)."""
        answers = iter(tops)
        out: list[Top] = []
        for x in items:
            if isinstance(x, Hit):
                out.append(x.top)
            elif isinstance(x, Miss):
                out.append(self.cache.put(x.key, next(answers), topk))
            else:
                out.append(next(answers))
        return out


def to_run(items: Sequence[object]) -> list[Any]:
    """The arrays the model must run for ``items``, in order: each miss's array and each plain array; hits are skipped."""
    return [x.array if isinstance(x, Miss) else x for x in items if not isinstance(x, Hit)]


__all__ = ["Classifies", "Hit", "Miss", "ResultFlow", "Top", "to_run"]
