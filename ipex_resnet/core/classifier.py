"""The classifier: image -> preprocessed array -> engine runner -> top-k labels.

Torch-free by itself: with a lean engine (OpenVINO, ONNX Runtime) and a cached artifact the whole
path is PIL + numpy + the engine. Torch tensors in give torch tensors out.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ipex_resnet.core.policy import Plan
from ipex_resnet.core.result_cache import Check, ResultCache
from ipex_resnet.engines.base import Runner, is_torch_tensor
from ipex_resnet.errors import ConfigError

if TYPE_CHECKING:
    from ipex_resnet.hardware.cpu import CPUInfo
    from ipex_resnet.imaging import Preprocessor

#: a numpy array or a torch tensor (torch is never imported here: a tensor in gives a tensor out)
Tensor = Any


class PlanWarning(UserWarning):
    """An explicit choice had to be changed, or will be slow (e.g. emulated BF16)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z, dtype=np.float64)
    return e / e.sum(axis=1, keepdims=True)


def topk_rows(logits: np.ndarray, k: int, label: Callable[[int], str]) -> list[list[dict]]:
    """Top-k ``{"label", "index", "score"}`` per row, best first; scores are softmax probabilities."""
    probs = softmax(np.asarray(logits, dtype=np.float32))
    k = min(k, probs.shape[1])
    idx = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    out = []
    for row, cand in zip(probs, idx):
        order = cand[np.lexsort((cand, -row[cand]))]  # by score, then index: deterministic on ties
        out.append([{"label": label(int(i)), "index": int(i), "score": float(row[i])} for i in order])
    return out


class Classifier:
    """An optimized image classifier. Build it with :func:`ipex_resnet.load`.

    Safe to share between threads: :meth:`predict`, :meth:`predict_tensors`, :meth:`submit` and calling
    it may come from any number of threads at once, with the answers sequential calls give. Model calls
    run on the plan's inference streams (``plan.streams``: that many at once, each on its own thread
    with ``plan.threads // plan.streams`` cores); callers beyond that wait for a free stream. Setting
    :attr:`result_cache` is configuration: do it before sharing the classifier.
    """

    def __init__(
        self,
        runner: Runner,
        plan: Plan,
        *,
        model_name: str,
        categories: Sequence[str],
        preprocessor: Preprocessor,
        cpu: CPUInfo | None,
        random_init: bool = False,
        artifact: dict | None = None,
    ) -> None:
        self._runner = runner
        self.plan = plan
        self.cpu = cpu
        self.model_name = model_name
        self.categories = list(categories)
        self.random_init = random_init
        self.preprocessor = preprocessor
        #: where the compiled artifact came from: {"entry", "hit", "info"} (None when not cached)
        self.artifact = artifact
        #: this instance's own name in the result cache's identity (used when it is not a cached artifact:
        #: equal plans may hold different weights)
        self.instance_id = uuid.uuid4().hex
        self._result_cache: ResultCache | None = None

    @property
    def result_cache(self) -> ResultCache | None:
        """The opt-in :class:`~ipex_resnet.core.result_cache.ResultCache` :meth:`predict` consults (None: off).
        Setting it adds a note to :attr:`plan` (``plan.describe()`` says it is on and how it is keyed)."""
        return self._result_cache

    @result_cache.setter
    def result_cache(self, spec: str | bool | ResultCache | None) -> None:
        import dataclasses

        from ipex_resnet.core import result_cache

        cache = result_cache.make(spec)
        notes = tuple(n for n in self.plan.notes if not n.startswith("result cache"))
        if cache is not None:
            notes += (cache.describe(),)
        self.plan = dataclasses.replace(self.plan, notes=notes)
        self._result_cache = cache

    def __repr__(self) -> str:
        return f"Classifier({self.model_name}, backend={self.plan.backend}, precision={self.plan.precision})"

    def __call__(self, batch: Tensor) -> Tensor:
        """Float32 logits for a preprocessed NCHW float batch (numpy array or torch tensor, same kind out)."""
        return self._runner(self._checked(batch))

    @staticmethod
    def _checked(batch: Tensor) -> Tensor:
        shape = getattr(batch, "shape", None)
        if shape is None or len(shape) != 4 or shape[1] != 3:
            got = tuple(shape) if shape is not None else type(batch).__name__
            raise ConfigError(f"expected a preprocessed Nx3xHxW float tensor, got {got}; use predict() for raw images")
        dtype = batch.dtype
        floating = batch.is_floating_point() if is_torch_tensor(batch) else np.issubdtype(dtype, np.floating)
        if not floating:
            raise ConfigError(f"expected a float tensor (normalized), got {dtype}")
        return batch

    def submit(self, batch: Tensor) -> concurrent.futures.Future:
        """Start :meth:`__call__` on the next free stream; the future holds the logits. Never blocks."""
        batch = self._checked(batch)
        submit = getattr(self._runner, "submit", None)
        if submit is not None:
            return submit(batch)
        done: concurrent.futures.Future = concurrent.futures.Future()
        done.set_result(self._runner(batch))
        return done

    @property
    def streams(self) -> int:
        """How many model calls run at once (the plan's inference streams)."""
        return int(getattr(self._runner, "count", 1))

    def close(self) -> None:
        """Stop the stream threads (after the calls already queued). The classifier must not be used after."""
        close = getattr(self._runner, "close", None)
        if close is not None:
            close()

    def preprocess(self, image: object, *, name: str | None = None) -> np.ndarray:
        """One image (path, bytes, file object, PIL, numpy, tensor) -> normalized 3xHxW float32 array."""
        return self.preprocessor(image, name=name)

    def topk(self, logits: Tensor, k: int = 5) -> list[list[dict]]:
        if k < 1:
            raise ConfigError(f"topk must be at least 1, got {k}")
        if is_torch_tensor(logits):
            logits = logits.detach().float().numpy()
        return topk_rows(np.asarray(logits), k, self.label)

    def label(self, index: int) -> str:
        return self.categories[index] if 0 <= index < len(self.categories) else f"class_{index}"

    def predict(self, images: Sequence[object] | object, topk: int = 5, batch_size: int = 32) -> list[list[dict]]:
        """Top-k ``{"label", "index", "score"}`` per image; scores are softmax probabilities.

        ``images`` is a list (a single image is treated as a list of one). Images of mixed sizes are
        fine. A bad image raises :class:`ImageError` naming it; to classify the rest, preprocess each
        with :meth:`preprocess` and call :meth:`predict_tensors`.
        """
        from ipex_resnet.imaging import describe_source

        if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, Sequence):
            images = [images]
        if topk < 1:
            raise ConfigError(f"topk must be at least 1, got {topk}")
        cache = self._result_cache
        if cache is not None:
            return self._predict_cached(cache, images, topk, batch_size)
        arrays = [self.preprocess(img, name=describe_source(img, i)) for i, img in enumerate(images)]
        return self.predict_tensors(arrays, topk=topk, batch_size=batch_size)

    def _predict_cached(
        self, cache: ResultCache, images: Sequence[object], topk: int, batch_size: int
    ) -> list[list[dict]]:
        """:meth:`predict` through the result cache: hits skip inference (exact: decoding too); the
        misses are preprocessed, classified together and stored. A bad image raises before anything is stored."""
        from ipex_resnet.core.result_flow import ResultFlow, to_run
        from ipex_resnet.imaging import describe_source

        flow = ResultFlow(cache, self)
        items = [flow.look_up(img, name=describe_source(img, i), topk=topk) for i, img in enumerate(images)]
        todo = to_run(items)
        tops = self.predict_tensors(todo, topk=topk, batch_size=batch_size) if todo else []
        return flow.store(items, tops, topk)

    def hash_check(self, name: str) -> Check | None:
        """The preprocessor's header check (refuses what it would refuse) for the perceptual hash's decode."""
        return self.preprocessor.header_check(name)

    def predict_tensors(self, tensors: Sequence[Tensor], topk: int = 5, batch_size: int = 32) -> list[list[dict]]:
        """Top-k for preprocessed 3xHxW images (numpy arrays or torch tensors)."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if topk < 1:
            raise ConfigError(f"topk must be at least 1, got {topk}")
        # with several streams the images are split so that every stream gets a share; at most two
        # chunks per stream are stacked at once (memory stays bounded on a long list)
        size = min(batch_size, max(1, -(-len(tensors) // self.streams)))
        in_flight: collections.deque[concurrent.futures.Future] = collections.deque()
        out: list[list[dict]] = []
        for start in range(0, len(tensors), size):
            chunk = [
                t.detach().float().numpy() if is_torch_tensor(t) else np.asarray(t, dtype=np.float32)
                for t in tensors[start : start + size]
            ]
            in_flight.append(self.submit(np.stack(chunk)))
            if len(in_flight) >= 2 * self.streams:
                out.extend(self.topk(in_flight.popleft().result(), topk))
        while in_flight:
            out.extend(self.topk(in_flight.popleft().result(), topk))
        return out


__all__ = ["Classifier", "PlanWarning", "softmax", "topk_rows"]
