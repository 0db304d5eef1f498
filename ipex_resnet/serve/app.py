"""The Starlette app: the service's state, the request pipeline shared by ``/v1`` and the Open
Inference Protocol (``/v2``, in :mod:`.oip`), and the health endpoints. What is done with the model
(decode, predict, encode) is the :class:`~ipex_resnet.serve.handler.Handler`'s; this module decides
when and whether.

Pipeline of one request: cheap checks -> the whole body within a byte limit and a deadline (no queue
place is held meanwhile) -> admission (at most ``max_queue`` requests admitted, else 503 at once) ->
declared pixels per image and per request, read from the headers -> decode + preprocess in a thread
pool -> the micro-batching queue -> one inference thread -> answer. From admission on, the request
is raced against its deadline (504) and against the client disconnecting (its work is dropped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ipex_resnet.serve.batching import Batcher, BatchFailed, QueueFull, Stopped
from ipex_resnet.serve.budget import BodyBudget
from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.connections import ConnectionStats
from ipex_resnet.serve.errors import BadParameter, ClientGone, InferenceFailed, ServiceError, Timeout, Unavailable
from ipex_resnet.serve.handler import Cached, Handler, Keyed
from ipex_resnet.serve.limits import check_request_pixels, read_body
from ipex_resnet.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ipex_resnet.serve.metrics import MetricsMiddleware, ServiceMetrics
from ipex_resnet.serve.requests import content_kind, disconnected, images_from

log = logging.getLogger("ipex_resnet.serve")

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_TOPK = 1000


class Service:
    """The state of one server process and the steps every inference request goes through."""

    def __init__(self, loader: Callable[[], object], cfg: ServeConfig, on_fatal=None):
        self.loader, self.cfg, self.on_fatal = loader, cfg, on_fatal
        self.handler: Handler | None = None
        self.clf = None  # the handler's classifier, once loaded
        self.batcher: Batcher | None = None
        self.ready = False
        self.draining = False  # readiness is 503 (SIGTERM received); requests are still served
        self.stopping = False  # the server stopped accepting; the batcher finishes what it has
        self.load_error: str | None = None
        self.in_flight = self.upstream = 0
        self.info: dict = {}
        self.image_shape: tuple[int, int, int] | None = None  # what the handler's decode_request returns
        self.metrics = ServiceMetrics()
        self.pool = concurrent.futures.ThreadPoolExecutor(cfg.preprocess_workers, thread_name_prefix="ipex-resnet-pre")
        self.tasks: list[asyncio.Task] = []
        self.loading: concurrent.futures.Future | None = None
        self.load_thread: threading.Thread | None = None
        self.bodies = BodyBudget(cfg.max_buffered_bytes, on_change=self.metrics.buffered_bytes.set)
        self.result_cache = None
        if cfg.result_cache != "off":
            from ipex_resnet.core.result_cache import ResultCache

            self.result_cache = ResultCache(
                cfg.result_cache, max_entries=cfg.result_cache_size, max_bytes=cfg.result_cache_bytes
            )
            counter = self.metrics.result_cache
            self.result_cache.listeners.append(lambda event: counter.labels(event).inc())
        self.connections = ConnectionStats(
            cfg.max_connections,
            cfg.header_timeout_s,
            cfg.retry_after_s,
            on_event=lambda why: self.metrics.connections_refused.labels(why).inc(),
            linger_s=cfg.linger_timeout_s,
        )

    # -- startup and shutdown -------------------------------------------------------------------------
    def _load_and_warm(self) -> Handler:
        """Load, warm up every batch size, measure the latency-vs-batch curve and cap the batch by the
        target (a target one batch-1 call misses raises ConfigError: the service refuses to start)."""
        from ipex_resnet.serve import tuning
        from ipex_resnet.serve.batching import warmup_sizes

        cfg = self.cfg
        handler = Handler(self.loader(), pad_batches=cfg.pad_batches)
        handler.warm_up(cfg.max_batch)
        plan = handler.clf.plan
        curve = tuning.latency_curve(
            handler.predict, handler.image_shape, warmup_sizes(cfg.max_batch, True), stop_above_ms=cfg.p99_ms / 2
        )
        tuning.check_target(cfg.p99_ms, curve, f"{plan.model} on {plan.backend}/{plan.precision}")
        cap = tuning.batch_cap(cfg.p99_ms, cfg.max_wait_ms, curve)
        handler.max_batch = min(cfg.max_batch, cap)
        handler.shaping = tuning.describe(cfg.p99_ms, handler.max_batch, curve)
        return handler

    def start_loading(self) -> concurrent.futures.Future:
        """Load and warm up the model (once) on a daemon thread of its own, not the loop's executor,
        whose threads the interpreter joins at exit: a server stopped while its model still compiles
        does not wait for it. The future holds the :class:`Handler`."""
        if self.loading is None:
            self.loading = done = concurrent.futures.Future()

            def work():
                try:
                    done.set_result(self._load_and_warm())
                except BaseException as exc:
                    done.set_exception(exc)

            self.load_thread = threading.Thread(target=work, name="ipex-resnet-load", daemon=True)
            self.load_thread.start()
        return self.loading

    def report_load_error(self, exc: BaseException) -> None:
        """Remember and log why the model could not be loaded (for /healthz and the log)."""
        from ipex_resnet.errors import IpexResnetError

        # an IpexResnetError's message is written for the user; anything else stays in the log
        known = isinstance(exc, IpexResnetError)
        self.load_error = str(exc) if known else f"{type(exc).__name__} (see the server log)"
        log.error("error: could not load the model: %s", exc, exc_info=not known)

    async def load(self) -> None:
        """Wait for the model (loading it unless :meth:`start_loading` already did), then start the
        batcher and turn ready. ``asyncio.wrap_future`` drops the result if the loop has closed by then."""
        try:
            handler = await asyncio.wrap_future(self.start_loading())
        except Exception as exc:
            self.report_load_error(exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return
        cfg = self.cfg
        clf = handler.clf
        self.handler, self.clf, self.image_shape, self.info = handler, clf, handler.image_shape, handler.info
        self.batcher = Batcher(
            handler.predict,
            handler.topk,
            max_batch=handler.max_batch,
            max_wait_s=cfg.max_wait_ms / 1000,
            max_queue=cfg.max_queue * cfg.max_files,
            pad=handler.pad,
            metrics=self.metrics,
            more_coming=lambda: self.upstream > 0,
            streams=clf.streams,
        )
        self.batcher.start()
        self.metrics.info.labels(clf.plan.model, clf.plan.backend, clf.plan.precision).set(1)
        self.ready = True
        log.info(
            "ready: %s, backend=%s, precision=%s, streams=%d x %d thread(s), max_batch=%d, max_wait=%.1f ms%s; %s; %s",
            clf.plan.model,
            clf.plan.backend,
            clf.plan.precision,
            clf.streams,
            clf.plan.threads_per_stream,
            handler.max_batch,
            cfg.max_wait_ms,
            ", padded batches" if handler.pad else "",
            f"{cfg.tuned}; {handler.shaping}" if cfg.tuned else handler.shaping,
            self.result_cache.describe() if self.result_cache is not None else "result cache off",
        )

    async def watch(self) -> None:
        """Keep the ready gauge and the per-worker process metrics current; hand freed heap pages back
        to the OS now and then (glibc keeps them per thread arena, so RSS creeps up under load)."""
        trim = _malloc_trim()
        while True:
            if trim is not None:  # off the loop: trimming a large heap takes milliseconds
                await asyncio.to_thread(trim, 0)
            self.metrics.ready.set(0 if self.readiness_problem() else 1)
            self.metrics.open_connections.set(self.connections.open)
            self.metrics.refresh_process()
            await asyncio.sleep(1.0)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.load()), loop.create_task(self.watch())]
        try:
            yield
        finally:
            self.draining, self.stopping, self.ready = True, True, False
            self.metrics.ready.set(0)
            if self.batcher is not None:
                await self.batcher.stop(self.cfg.graceful_timeout_s)  # finishes everything already queued
            for t in self.tasks:
                t.cancel()
            self.pool.shutdown(wait=False, cancel_futures=True)

    # -- health -------------------------------------------------------------------------------------
    def health_problem(self) -> Unavailable | None:
        """Is the process able to make progress? (A loading model is healthy; a stuck batch is not.)"""
        if self.load_error:
            return Unavailable(f"the model failed to load: {self.load_error}", code="load_failed")
        if self.batcher is not None:
            why = self.batcher.problem(self.cfg.stall_timeout_s)
            if why:
                return Unavailable(f"inference is not making progress: {why}", code="inference_stalled")
        return None

    def _serving_problem(self, shutting_down: bool) -> Unavailable | None:
        if shutting_down:
            return Unavailable("the service is shutting down", code="shutting_down")
        problem = self.health_problem()
        if problem is None and not self.ready:
            problem = Unavailable("the model is loading and warming up; retry shortly", code="not_ready")
        return problem

    def readiness_problem(self) -> Unavailable | None:
        return self._serving_problem(self.draining)

    def check_accepting(self) -> None:
        """New work is refused while loading, stalled or stopping (503 + Retry-After). While draining
        (readiness already 503, the load balancer taking the instance out) requests are still served."""
        problem = self._serving_problem(self.stopping)
        if problem is not None:
            raise problem

    # -- the pipeline ---------------------------------------------------------------------------------
    def parse_topk(self, raw) -> int:
        if raw is None:
            return 5
        limit = self.handler.max_topk if self.handler is not None else MAX_TOPK
        try:
            k = int(raw)
        except (TypeError, ValueError):
            raise BadParameter(f"topk must be an integer from 1 to {limit}, got {raw!r}", code="bad_topk") from None
        if not 1 <= k <= limit:
            raise BadParameter(f"topk must be from 1 to {limit}, got {k}", code="bad_topk")
        return k

    @contextlib.asynccontextmanager
    async def admitted(self):
        """A place among the ``max_queue`` requests being processed, or 503 at once."""
        if self.in_flight >= self.cfg.max_queue:
            raise Unavailable(f"too many requests in flight ({self.cfg.max_queue}); retry shortly", code="overloaded")
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.set(self.in_flight)

    async def preprocess(self, images: list[tuple[str, bytes]], topk: int | None = None) -> list:
        """Check the declared pixels, then decode + preprocess each image in the pool. With the result
        cache and ``topk``, an image may come back as a :class:`Cached` hit (no inference; in exact mode
        not decoded) or a :class:`Keyed` tensor whose result :meth:`infer` stores."""
        loop = asyncio.get_running_loop()
        cfg = self.cfg
        await loop.run_in_executor(self.pool, check_request_pixels, images, cfg.max_pixels, cfg.max_request_pixels)
        if self.result_cache is not None and topk is not None:
            cache, decode_cached = self.result_cache, self.handler.decode_cached
            jobs = [loop.run_in_executor(self.pool, decode_cached, cache, n, d, topk) for n, d in images]
        else:
            decode = self.handler.decode_request
            jobs = [loop.run_in_executor(self.pool, decode, n, d) for n, d in images]
        try:
            return list(await asyncio.gather(*jobs))
        except BaseException:
            for j in jobs:
                j.cancel()
            raise

    async def infer(self, items: list, topk: int) -> list[list[dict]]:
        """Top-k per item: a :class:`Cached` hit as it is, the rest through the micro-batcher (a
        :class:`Keyed` result is stored in the result cache)."""
        if not any(isinstance(x, (Cached, Keyed)) for x in items):
            return await self._infer(items, topk)
        todo = [i for i, x in enumerate(items) if not isinstance(x, Cached)]
        tops = (
            await self._infer([items[i].tensor if isinstance(items[i], Keyed) else items[i] for i in todo], topk)
            if todo
            else []
        )
        out = [x.top if isinstance(x, Cached) else None for x in items]
        for i, top in zip(todo, tops):
            x = items[i]
            out[i] = self.result_cache.put(x.key, top, topk) if isinstance(x, Keyed) else top
        self.metrics.result_cache_entries.set(len(self.result_cache))
        return out

    async def _infer(self, tensors: list[np.ndarray], topk: int) -> list[list[dict]]:
        if not tensors:
            return []
        try:
            futures = self.batcher.submit(tensors, topk)
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

    async def run(self, request, prepare, topk: int) -> list[list[dict]]:
        """Admit, then ``await prepare()`` (-> tensors) and infer, raced against the request deadline and
        the client disconnecting; either way the request's work is dropped."""
        async with self.admitted():

            async def work():
                self.upstream += 1  # admitted and not yet queued for a batch: a batch may wait for it
                queued = False
                try:
                    tensors = await prepare()
                    self.upstream -= 1
                    queued = True
                    return await self.infer(tensors, topk)
                finally:
                    if not queued:
                        self.upstream -= 1

            task = asyncio.ensure_future(work())
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

    def error_response(self, exc: BaseException, *, oip: bool = False):
        """The JSON error for ``exc``: ``{"error": {status, code, message}}``, or the Open Inference
        Protocol's ``{"error": message}`` (``oip=True``). Only typed errors' messages reach a client."""
        from starlette.responses import JSONResponse

        if not isinstance(exc, ServiceError):
            ref = uuid.uuid4().hex[:12]
            log.error("internal error %s", ref, exc_info=exc)
            exc = ServiceError(f"internal error (reference {ref}); the details are in the server log")
        headers = dict(exc.headers)
        if exc.status == 503:
            headers["Retry-After"] = str(self.cfg.retry_after_s)
        if exc.status in (503, 504, 499) or exc.code in ("body_timeout",):
            self.metrics.rejected.labels(exc.code).inc()
        return JSONResponse({"error": exc.message} if oip else exc.body(), exc.status, headers=headers)


def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def create_app(
    loader: Callable[[], object],
    config: ServeConfig | None = None,
    *,
    on_fatal: Callable[[BaseException], None] | None = None,
):
    """A Starlette app serving the classifier that ``loader()`` returns (called in a thread at startup).

    ``/healthz`` answers 200 while the process can make progress (also while loading);
    ``/readyz`` and inference answer 503 until the classifier is loaded and warmed up.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from ipex_resnet.serve.oip import oip_routes

    cfg = config or ServeConfig()
    svc = Service(loader, cfg, on_fatal)

    async def healthz(request: Request):
        problem = svc.health_problem()
        return svc.error_response(problem) if problem else JSONResponse({"status": "alive"})

    async def readyz(request: Request):
        problem = svc.readiness_problem()
        if problem:
            return svc.error_response(problem)
        return JSONResponse({"status": "ready", **svc.info, "max_batch": cfg.max_batch})

    async def metrics_endpoint(request: Request):
        return Response(svc.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def index(request: Request):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def classify(request: Request):
        with svc.bodies.hold() as held:  # the body's bytes count against the budget until this returns
            try:
                svc.check_accepting()
                topk = svc.parse_topk(request.query_params.get("topk"))
                kind = content_kind(request)
                body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s, held)
                images = await images_from(request, kind, body, cfg.max_files)
                tops = await svc.run(request, lambda: svc.preprocess(images, topk), topk)
            except Exception as exc:
                return svc.error_response(exc)
            return JSONResponse(svc.handler.encode_response([name for name, _ in images], tops, topk))

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/v1/classify", classify, methods=["POST"]),
        *oip_routes(svc),
    ]
    app = Starlette(routes=routes, lifespan=svc.lifespan)
    app.state.service = svc
    app.state.config = cfg
    return MetricsMiddleware(app, svc.metrics, routes)


__all__ = ["Service", "create_app"]
