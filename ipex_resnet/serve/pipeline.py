"""The request pipeline shared by ``/v1`` and the Open Inference Protocol (``/v2``), once a request's body
is read: admission -> declared pixels per image and per request -> decode + preprocess in a thread pool
(through the opt-in result cache) -> the micro-batching queue -> answer. From admission on, the request is
raced against its deadline (504) and against the client disconnecting (its work is dropped)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ipex_resnet.core.result_cache import ResultCache
from ipex_resnet.core.result_flow import Top, to_run
from ipex_resnet.serve.admission import Admission
from ipex_resnet.serve.batching import BatchFailed, QueueFull, Stopped
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.errors import BadParameter, ClientGone, InferenceFailed, Timeout, Unavailable
from ipex_resnet.serve.lifecycle import Lifecycle
from ipex_resnet.serve.limits import check_request_pixels
from ipex_resnet.serve.metrics import ServiceMetrics
from ipex_resnet.serve.requests import disconnected

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_TOPK = 1000
#: ``await prepare()`` -> a request's decoded items: tensors, or result-cache hits and misses
Prepare = Callable[[], Awaitable[list[Any]]]


class Pipeline:
    """The steps every inference request goes through (see the module docstring)."""

    def __init__(
        self,
        cfg: ServeConfig,
        life: Lifecycle,
        admission: Admission,
        metrics: ServiceMetrics,
        result_cache: ResultCache | None,
    ) -> None:
        self.cfg, self.life, self.admission, self.metrics, self.result_cache = (
            cfg,
            life,
            admission,
            metrics,
            result_cache,
        )
        self.pool = concurrent.futures.ThreadPoolExecutor(cfg.preprocess_workers, thread_name_prefix="ipex-resnet-pre")

    def parse_topk(self, raw: Any) -> int:
        """``topk`` as a client sent it (a query parameter, a JSON value; None: 5) -> an int, or 422."""
        if raw is None:
            return 5
        limit = self.life.serving.handler.max_topk if self.life.serving is not None else MAX_TOPK
        try:
            k = int(raw)
        except (TypeError, ValueError):
            raise BadParameter(f"topk must be an integer from 1 to {limit}, got {raw!r}", code="bad_topk") from None
        if not 1 <= k <= limit:
            raise BadParameter(f"topk must be from 1 to {limit}, got {k}", code="bad_topk")
        return k

    async def preprocess(self, images: list[tuple[str, bytes]], topk: int | None = None) -> list[Any]:
        """Check the declared pixels, then decode + preprocess each image in the pool. With the result
        cache and ``topk``, an image may come back as a result-cache hit (no inference; in exact mode not
        decoded) or a miss whose result :meth:`infer` stores."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        decode = self.life.loaded().handler.decode_request
        if len(images) == 1:  # the common request: its checks and its decode in one trip to the pool
            return [await loop.run_in_executor(self.pool, self._checked_decode, images, decode, topk)]
        await loop.run_in_executor(self.pool, check_request_pixels, images, cfg.max_pixels, cfg.max_request_pixels)
        jobs = [loop.run_in_executor(self.pool, decode, n, d, topk) for n, d in images]
        try:
            return list(await asyncio.gather(*jobs))
        except BaseException:
            for j in jobs:
                j.cancel()
            raise

    def _checked_decode(self, images: list[tuple[str, bytes]], decode: Callable[..., Any], topk: int | None) -> Any:
        check_request_pixels(images, self.cfg.max_pixels, self.cfg.max_request_pixels)
        name, data = images[0]
        return decode(name, data, topk)

    async def infer(self, items: Sequence[Any], topk: int) -> list[Top]:
        """Top-k per item: a result-cache hit as it is, the rest through the micro-batcher (a miss's
        result is stored in the result cache)."""
        serving = self.life.loaded()
        tops = await self._batched(to_run(items), topk)
        out = serving.handler.answers(items, tops, topk)
        if self.result_cache is not None:
            self.metrics.result_cache_entries.set(len(self.result_cache))
        return out

    async def _batched(self, tensors: list[np.ndarray], topk: int) -> list[Top]:
        if not tensors:
            return []
        try:
            futures = self.life.loaded().batcher.submit(tensors, topk)
        except QueueFull as exc:
            raise Unavailable(str(exc) + "; retry shortly", code="overloaded") from None
        except Stopped:
            raise Unavailable("the service is shutting down", code="shutting_down") from None
        try:
            return list(await asyncio.gather(*futures))
        except BatchFailed as exc:
            raise InferenceFailed(f"{exc}; the service keeps running, retry") from None
        finally:
            for f in futures:
                f.cancel()  # a no-op for answered images; drops the rest from the queue

    async def _work(self, prepare: Prepare, topk: int) -> list[Top]:
        with self.admission.preparing():  # admitted and not yet queued for a batch: a batch may wait for it
            items = await prepare()
        return await self.infer(items, topk)

    async def run(self, request: Request, prepare: Prepare, topk: int) -> list[Top]:
        """Admit, then ``await prepare()`` (-> tensors) and infer, raced against the request deadline and
        the client disconnecting; either way the request's work is dropped."""
        async with self.admission.admitted():
            task = asyncio.ensure_future(self._work(prepare, topk))
            gone = asyncio.ensure_future(disconnected(request))
            try:
                done, _ = await asyncio.wait(
                    {task, gone}, timeout=self.cfg.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                gone.cancel()
            if task in done:
                return task.result()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            if gone in done:
                raise ClientGone("the client disconnected before the answer")
            raise Timeout(f"the request was not answered within {self.cfg.request_timeout_s:g} s")

    def close(self) -> None:
        """Stop the preprocessing pool (queued work is dropped)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["MAX_TOPK", "Pipeline", "Prepare"]
