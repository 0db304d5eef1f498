"""The model side of a request, in the style of LitServe's ``LitAPI`` and TorchServe's base handler: one
object that knows the classifier and nothing of HTTP.

- :meth:`Handler.decode_request`: the bytes of one image -> its preprocessed tensor (typed errors)
- :meth:`Handler.predict`: a batch of tensors -> logits; :meth:`Handler.topk`: logits -> top-k rows
- :meth:`Handler.encode_response`: the top-k rows of one ``/v1`` request -> its JSON body
- :meth:`Handler.decode_cached`: with the opt-in result cache, one image's bytes -> its cached top-k
  (:class:`Cached`: no inference; in exact mode no decoding either) or its tensor and cache key (:class:`Keyed`)

Routes, admission, limits and budgets (:mod:`.app`, :mod:`.oip`, :mod:`.limits`) and the micro-batching
queue (:mod:`.batching`) stay outside and call it. :meth:`Handler.warm_up` runs every batch size the
batcher will use once the server is up, so no request pays for a first call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ipex_resnet.serve.batching import warmup_sizes
from ipex_resnet.serve.errors import BadImage

WARMUP_IMAGE_SIZE = (320, 240)  # any photo-like size: preprocessing resizes and crops it


class Cached:
    """A result-cache hit standing in for an image's tensor: its top-k rows."""

    __slots__ = ("top",)

    def __init__(self, top: list[dict]):
        self.top = top


class Keyed:
    """A result-cache miss: the image's tensor and the key its result is stored under once classified."""

    __slots__ = ("key", "tensor")

    def __init__(self, tensor: np.ndarray, key):
        self.tensor, self.key = tensor, key


class Handler:
    """Decode, predict and encode for one loaded classifier.

    ``pad_batches``: ``"on"``, ``"off"`` or ``"auto"`` (on for Inductor, which compiles for every new batch
    shape); :attr:`pad` tells the batcher to pad each batch up to a warmed-up size.
    """

    def __init__(self, clf, *, pad_batches: str = "auto"):
        from PIL import Image

        self.clf = clf
        self._identity: str | None = None  # the classifier's result-cache identity, on first use
        plan = clf.plan
        self.pad = pad_batches == "on" or (pad_batches == "auto" and plan.backend == "inductor")
        self.info = {"model": plan.model, "backend": plan.backend, "precision": plan.precision, "weights": plan.weights}
        #: the largest micro-batch the batcher may form (the service caps it by its latency target)
        self.max_batch: int | None = None
        self.shaping = "no latency target"  # how the batch was capped, for the ready line
        sample = Image.new("RGB", WARMUP_IMAGE_SIZE, (120, 90, 60))
        self.image_shape: tuple[int, int, int] = tuple(clf.preprocess(sample).shape)  # what decode_request returns

    @property
    def max_topk(self) -> int:
        return len(self.clf.categories)

    def warm_up(self, max_batch: int) -> None:
        """Run every batch size the batcher can send, twice (the second call settles lazy init)."""
        for n in warmup_sizes(max_batch, self.pad):
            x = np.random.default_rng(n).standard_normal((n, *self.image_shape), dtype=np.float32)
            for _ in range(2):
                self.predict(x)

    # -- the three steps ------------------------------------------------------------------------------
    def decode_request(self, name: str, data: bytes) -> np.ndarray:
        """One image's bytes -> its preprocessed tensor, or :class:`BadImage` with the decoder's message
        (written for the user) and its typed code."""
        from ipex_resnet.errors import ImageError

        try:
            return self.clf.preprocess(data, name=name)
        except ImageError as exc:
            raise BadImage(str(exc), code=getattr(exc, "code", None) or "bad_image") from None

    def decode_cached(self, cache, name: str, data: bytes, topk: int) -> Cached | Keyed:
        """One image's bytes through the result cache: a hit -> :class:`Cached` (exact: nothing decoded);
        a miss -> :class:`Keyed` (decoded and preprocessed). A bad image raises :class:`BadImage`, as
        :meth:`decode_request` does, and nothing is stored for it."""
        from ipex_resnet.core.result_cache import identity
        from ipex_resnet.errors import ImageError

        if self._identity is None:
            self._identity = identity(self.clf)
        try:
            key = cache.key_for_bytes(
                self._identity,
                data,
                name=name,
                max_pixels=self.clf.preprocessor.max_pixels,
                check=self._hash_check(name),
            )
        except ImageError as exc:
            raise BadImage(str(exc), code=getattr(exc, "code", None) or "bad_image") from None
        top = cache.get(key, topk)
        if top is not None:
            return Cached(top)
        return Keyed(self.decode_request(name, data), key)

    def _hash_check(self, name: str):
        check = getattr(self.clf, "hash_check", None)
        return check(name) if check is not None else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A stacked NCHW batch -> its logits, one row per image."""
        return self.clf(batch)

    def topk(self, logits: np.ndarray, k: int) -> list[list[dict]]:
        """Logits -> per image the ``k`` best classes as ``{"index", "label", "score"}``."""
        return self.clf.topk(logits, k)

    def encode_response(self, names: Sequence[str], tops: Sequence[list[dict]], topk: int) -> dict:
        """The ``/v1/classify`` body: the model's description, ``topk`` and one result per image."""
        return {**self.info, "topk": topk, "results": [{"input": name, "top": top} for name, top in zip(names, tops)]}


__all__ = ["Cached", "Handler", "Keyed"]
