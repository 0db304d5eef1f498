"""The model side of a request, in the style of LitServe's ``LitAPI`` and TorchServe's base handler: one
object that knows the classifier and nothing of HTTP.

- :meth:`Handler.decode_request`: the bytes of one image -> its preprocessed tensor (typed errors); with
  the opt-in result cache, its cached top-k (a :class:`~ipex_resnet.core.result_flow.Hit`: no inference,
  in exact mode no decoding either) or its tensor and cache key (a :class:`~ipex_resnet.core.result_flow.Miss`)
- :meth:`Handler.predict`: a batch of tensors -> logits; :meth:`Handler.topk`: logits -> top-k rows
- :meth:`Handler.answers`: the top-k rows per decoded item, the result cache's misses stored
- :meth:`Handler.encode_response`: the top-k rows of one ``/v1`` request -> its JSON body

Routes, admission, limits and budgets (:mod:`.app`, :mod:`.oip`, :mod:`.limits`) and the micro-batching
queue (:mod:`.batching`) stay outside and call it. :meth:`Handler.warm_up` runs every batch size the
batcher will use once the server is up, so no request pays for a first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ipex_resnet.core.result_flow import Hit, Miss, ResultFlow, Top
from ipex_resnet.errors import ImageError
from ipex_resnet.serve.batching import warmup_sizes
from ipex_resnet.serve.errors import BadImage

if TYPE_CHECKING:
    from ipex_resnet.core.classifier import Classifier
    from ipex_resnet.core.result_cache import ResultCache

WARMUP_IMAGE_SIZE = (320, 240)  # any photo-like size: preprocessing resizes and crops it


class Handler:
    """Decode, predict and encode for one loaded classifier.

    ``pad_batches``: ``"on"``, ``"off"`` or ``"auto"`` (on for Inductor, which compiles for every new batch
    shape); :attr:`pad` tells the batcher to pad each batch up to a warmed-up size. ``result_cache``: the
    opt-in cache :meth:`decode_request` looks images up in and :meth:`answers` stores results in.
    """

    def __init__(self, clf: Classifier, *, pad_batches: str = "auto", result_cache: ResultCache | None = None):
        from PIL import Image

        self.clf = clf
        self.results = ResultFlow(result_cache, clf) if result_cache is not None else None
        plan = clf.plan
        self.pad = pad_batches == "on" or (pad_batches == "auto" and plan.backend == "inductor")
        self.info = {"model": plan.model, "backend": plan.backend, "precision": plan.precision, "weights": plan.weights}
        #: the largest micro-batch the batcher may form (the service caps it by its latency target)
        self.max_batch: int | None = None
        self.shaping = "no latency target"  # how the batch was capped, for the ready line
        sample = Image.new("RGB", WARMUP_IMAGE_SIZE, (120, 90, 60))
        c, h, w = clf.preprocess(sample).shape
        self.image_shape = (c, h, w)  # what decode_request returns

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
    def decode_request(self, name: str, data: bytes, topk: int | None = None) -> np.ndarray | Hit | Miss:
        """One image's bytes -> its preprocessed tensor, or :class:`BadImage` with the decoder's message
        (written for the user) and its typed code. With the result cache and ``topk``: a :class:`Hit`
        (exact mode: nothing decoded) or a :class:`Miss` (decoded and preprocessed); nothing is stored
        for a bad image."""
        try:
            if self.results is None or topk is None:
                return self.clf.preprocess(data, name=name)
            return self.results.look_up(data, name=name, topk=topk)
        except ImageError as exc:
            raise BadImage(str(exc), code=getattr(exc, "code", None) or "bad_image") from None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """A stacked NCHW batch -> its logits, one row per image."""
        return self.clf(batch)

    def topk(self, logits: np.ndarray, k: int) -> list[list[dict]]:
        """Logits -> per image the ``k`` best classes as ``{"index", "label", "score"}``."""
        return self.clf.topk(logits, k)

    def answers(self, items: Sequence[object], tops: Sequence[Top], topk: int) -> list[Top]:
        """The top-k per decoded item: a hit's own, the others' from ``tops`` (the answers for the tensors
        :func:`~ipex_resnet.core.result_flow.to_run` picks), each miss's result stored in the result cache."""
        return list(tops) if self.results is None else self.results.store(items, tops, topk)

    def encode_response(self, names: Sequence[str], tops: Sequence[list[dict]], topk: int) -> dict:
        """The ``/v1/classify`` body: the model's description, ``topk`` and one result per image."""
        return {**self.info, "topk": topk, "results": [{"input": name, "top": top} for name, top in zip(names, tops)]}


__all__ = ["Handler"]
