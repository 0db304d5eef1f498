"""``ipex-resnet serve``: the classifier over HTTP (Starlette + uvicorn) with dynamic batching.

Endpoints: ``POST /v1/classify`` (raw image body or multipart files, ``?topk=``), ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (Prometheus text) and ``GET /`` (an upload page).

Flow of one classify request: cheap checks (topk, content type) -> admission (at most
``max_queue`` requests in the system, else 503 + Retry-After at once) -> body read with a hard byte
limit while streaming (413) -> decode + preprocess in a thread pool -> the micro-batching queue ->
one inference thread -> JSON. Every admitted request gets an answer: its result, a JSON error, or
504 after ``request_timeout``. On SIGTERM/SIGINT the server stops accepting, finishes what it
accepted, then exits.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .batching import Batcher, QueueFull, Stopped, bucket_sizes
from .errors import ImageError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE, ServiceMetrics

log = logging.getLogger("ipex_resnet.serve")

STATIC_DIR = Path(__file__).with_name("static")
RAW_TYPES = ("application/octet-stream",)
MAX_TOPK = 1000


@dataclasses.dataclass
class ServeConfig:
    max_batch: int = 16               # images per micro-batch (1 = batching off)
    max_wait_ms: float = 5.0          # how long the first image of a batch waits for company
    max_queue: int = 64               # classify requests admitted and not yet answered; past it: 503
    max_body_bytes: int = 20 * 2**20  # per request body (raw or multipart); past it: 413
    max_files: int = 16               # file parts per multipart request
    request_timeout_s: float = 30.0   # per admitted request; past it: 504
    preprocess_workers: int = 2       # decode/resize threads
    pad_batches: str = "auto"         # auto (on for inductor) | on | off
    retry_after_s: int = 1

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_files", "preprocess_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("max_wait_ms must be >= 0 and request_timeout_s > 0")
        if self.pad_batches not in ("auto", "on", "off"):
            raise ValueError(f"pad_batches must be auto, on or off, got {self.pad_batches!r}")


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _image_error_code(problem: str) -> str:
    p = problem.lower()
    if "empty" in p:
        return "empty_image"
    if "decompression bomb" in p or "too large" in p:
        return "image_too_large"
    if "truncated" in p:
        return "truncated_image"
    if "not an image" in p:
        return "not_an_image"
    return "bad_image"


def warmup_sizes(max_batch: int, pad: bool) -> list[int]:
    return bucket_sizes(max_batch) if pad else sorted({1, max_batch})


# -- the app ------------------------------------------------------------------------------------------
def create_app(loader: Callable[[], object], config: ServeConfig | None = None, *,
               on_fatal: Callable[[BaseException], None] | None = None):
    """A Starlette app serving the classifier that ``loader()`` returns (called in a thread at startup).

    ``/healthz`` answers at once; ``/readyz`` and ``/v1/classify`` answer 503 until the classifier is
    loaded and warmed up for every batch size it will see.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
    from starlette.routing import Route

    cfg = config or ServeConfig()
    state = argparse.Namespace(clf=None, batcher=None, ready=False, draining=False, load_error=None,
                               in_flight=0, upstream=0, load_task=None, info={})
    metrics = ServiceMetrics(queue_depth_fn=lambda: state.batcher.depth if state.batcher else 0)
    pre_pool = concurrent.futures.ThreadPoolExecutor(cfg.preprocess_workers, thread_name_prefix="ipex-resnet-pre")

    def error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status, headers=headers)

    def unavailable(code: str, message: str) -> JSONResponse:
        return error(503, code, message, {"Retry-After": str(cfg.retry_after_s)})

    # -- startup: load + warm up off the event loop -----------------------------------------------
    def load_and_warm():
        clf = loader()
        pad = cfg.pad_batches == "on" or (cfg.pad_batches == "auto" and clf.plan.backend == "inductor")
        size = clf.preprocessor.crop_size
        for n in warmup_sizes(cfg.max_batch, pad):
            x = torch.randn(n, 3, size, size)
            for _ in range(2):
                clf(x)
        return clf, pad

    async def load():
        try:
            clf, pad = await asyncio.get_running_loop().run_in_executor(None, load_and_warm)
        except Exception as exc:  # noqa: BLE001 - report, stay alive for /healthz, tell the runner
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("error: could not load the model: %s", state.load_error)
            if on_fatal is not None:
                on_fatal(exc)
            return
        state.clf = clf
        state.info = {"model": clf.plan.model, "backend": clf.plan.backend, "precision": clf.plan.precision,
                      "weights": clf.plan.weights}
        state.batcher = Batcher(clf, clf.topk, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000,
                                max_queue=cfg.max_queue * cfg.max_files, pad=pad, metrics=metrics,
                                more_coming=lambda: state.upstream > 0)
        state.batcher.start()
        metrics.info.set(1, model=clf.plan.model, backend=clf.plan.backend, precision=clf.plan.precision)
        metrics.ready.set(1)
        state.ready = True
        log.info("ready: %s, backend=%s, precision=%s, max_batch=%d, max_wait=%.1f ms%s", clf.plan.model,
                 clf.plan.backend, clf.plan.precision, cfg.max_batch, cfg.max_wait_ms, ", padded batches" if pad else "")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state.load_task = asyncio.get_running_loop().create_task(load())
        try:
            yield
        finally:
            state.draining = True
            state.ready = False
            metrics.ready.set(0)
            if state.batcher is not None:
                await state.batcher.stop()  # finishes everything already queued
            if not state.load_task.done():
                state.load_task.cancel()
            pre_pool.shutdown(wait=False, cancel_futures=True)

    # -- endpoints ----------------------------------------------------------------------------------
    async def healthz(request: Request):
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request):
        if state.draining:
            return unavailable("shutting_down", "the service is shutting down")
        if state.load_error:
            return unavailable("load_failed", f"the model failed to load: {state.load_error}")
        if not state.ready:
            return unavailable("not_ready", "the model is loading and warming up")
        return JSONResponse({"status": "ready", **state.info, "max_batch": cfg.max_batch})

    async def metrics_endpoint(request: Request):
        return PlainTextResponse(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def index(request: Request):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    def parse_topk(request: Request) -> int:
        raw = request.query_params.get("topk")
        if raw is None:
            return 5
        try:
            k = int(raw)
        except ValueError:
            raise HTTPError(422, "bad_topk", f"topk must be an integer from 1 to {MAX_TOPK}, got {raw!r}") from None
        limit = len(state.clf.categories) if state.clf is not None else MAX_TOPK
        if not 1 <= k <= limit:
            raise HTTPError(422, "bad_topk", f"topk must be from 1 to {limit}, got {k}")
        return k

    def content_kind(request: Request) -> str:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "multipart/form-data":
            return "multipart"
        if ctype == "" or ctype in RAW_TYPES or ctype.startswith("image/"):
            return "raw"
        raise HTTPError(415, "unsupported_media_type",
                        f"content type {ctype!r} is not supported; send the image as the raw body with "
                        "Content-Type image/* or application/octet-stream, or as multipart/form-data file parts")

    async def read_body(request: Request) -> bytes:
        limit = cfg.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise HTTPError(413, "body_too_large", f"request body of {int(declared)} bytes exceeds the "
                                                   f"{limit}-byte limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, "body_too_large", f"request body exceeds the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    async def images_from(request: Request, kind: str) -> list[tuple[str, bytes]]:
        body = await read_body(request)
        if kind == "raw":
            if not body:
                raise HTTPError(400, "empty_body", "the request body is empty; send an image")
            return [(request.query_params.get("name") or "body", body)]

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        form_request = Request(request.scope, replay)
        try:
            form = await form_request.form(max_files=cfg.max_files, max_fields=100)
        except Exception as exc:  # noqa: BLE001 - MultiPartException / HTTPException(400) from starlette
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            raise HTTPError(400, "bad_multipart", f"cannot parse the multipart body: {detail}") from None
        try:
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if hasattr(v, "read")]
        finally:
            await form.close()
        if not files:
            raise HTTPError(400, "no_files", "the multipart body has no file parts; add the image as a file field")
        return files

    def preprocess(name: str, data: bytes) -> torch.Tensor:
        return state.clf.preprocess(data, name=name)

    async def handle(request: Request, topk: int, kind: str, progress: dict) -> dict:
        images = await images_from(request, kind)
        loop = asyncio.get_running_loop()
        tensors = []
        outcomes = await asyncio.gather(*(loop.run_in_executor(pre_pool, preprocess, n, d) for n, d in images),
                                        return_exceptions=True)
        for (name, _), out in zip(images, outcomes):
            if isinstance(out, ImageError):
                raise HTTPError(400, _image_error_code(out.problem), f"{name}: {out.problem}")
            if isinstance(out, BaseException):
                raise out
            tensors.append(out)
        try:  # admitted before a SIGTERM: still served (the batcher stops only after the last answer)
            progress["upstream"] = False
            state.upstream -= 1
            futures = state.batcher.submit(tensors, topk)
        except (QueueFull, Stopped) as exc:
            raise HTTPError(503, "overloaded" if isinstance(exc, QueueFull) else "shutting_down", str(exc),
                            {"Retry-After": str(cfg.retry_after_s)}) from None
        try:
            tops = await asyncio.gather(*futures)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        return {**state.info, "topk": topk,
                "results": [{"input": name, "top": top} for (name, _), top in zip(images, tops)]}

    async def classify(request: Request):
        try:
            if state.draining:
                return unavailable("shutting_down", "the service is shutting down")
            if not state.ready:
                if state.load_error:
                    return unavailable("load_failed", f"the model failed to load: {state.load_error}")
                return unavailable("not_ready", "the model is loading and warming up; retry shortly")
            topk = parse_topk(request)
            kind = content_kind(request)
            if state.in_flight >= cfg.max_queue:
                metrics.rejected.inc(reason="overloaded")
                return unavailable("overloaded", f"too many requests in flight ({cfg.max_queue}); retry shortly")
            state.in_flight += 1
            state.upstream += 1  # admitted, not yet queued for a batch (reading, decoding)
            metrics.in_flight.set(state.in_flight)
            progress = {"upstream": True}
            try:
                doc = await asyncio.wait_for(handle(request, topk, kind, progress), cfg.request_timeout_s)
            except asyncio.TimeoutError:
                metrics.rejected.inc(reason="timeout")
                return error(504, "timeout", f"the request was not answered within {cfg.request_timeout_s:g} s")
            finally:
                if progress["upstream"]:
                    state.upstream -= 1
                state.in_flight -= 1
                metrics.in_flight.set(state.in_flight)
            return JSONResponse(doc)
        except HTTPError as exc:
            if exc.status == 503:
                metrics.rejected.inc(reason="overloaded" if exc.code == "overloaded" else exc.code)
            return error(exc.status, exc.code, exc.message, exc.headers)
        except Exception as exc:  # noqa: BLE001 - a bug or a backend failure: answer, log, keep serving
            log.exception("classify failed")
            return error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/v1/classify", classify, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.serve = state
    app.state.metrics = metrics
    app.state.config = cfg
    known = {r.path for r in routes}
    return _MetricsMiddleware(app, metrics, known)


class _MetricsMiddleware:
    """Counts every HTTP response by endpoint and status and times it (pure ASGI, no buffering)."""

    def __init__(self, app, metrics: ServiceMetrics, known: set[str]):
        self.app, self.metrics, self.known = app, metrics, known
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        status = {"code": 500}
        endpoint = scope.get("path", "") if scope.get("path", "") in self.known else "other"

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.inc(endpoint=endpoint, status=str(status["code"]))
            self.metrics.latency.observe(time.monotonic() - start, endpoint=endpoint)


# -- running it ------------------------------------------------------------------------------------
def _make_server(app, host: str, port: int, *, log_level: str = "info", access_log: bool = False,
                 graceful_timeout_s: float | None = 30.0):
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # SIGTERM/SIGINT: readyz flips to 503, new classify -> 503
            app.state.serve.draining = True
            super().handle_exit(sig, frame)
            # uvicorn re-raises the captured signal after its graceful shutdown, so the process would die
            # of SIGTERM; a drained SIGTERM is a clean stop here: exit status 0 (SIGINT still -> 130).
            captured = getattr(self, "_captured_signals", None)
            if sig == signal.SIGTERM and captured and captured[-1] == signal.SIGTERM:
                captured.pop()

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                            lifespan="on", timeout_graceful_shutdown=graceful_timeout_s, log_config=None)
    return Server(config)


class ServerThread:
    """Run the service in a background thread on a free loopback port (tests, load tests, notebooks).

        with ServerThread(create_app(loader)) as srv:
            httpx.get(srv.url + "/readyz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.server = _make_server(app, self.host, self.port, log_level=log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="ipex-resnet-server")

    @property
    def state(self):
        return self.app.state.serve

    def start(self, timeout_s: float = 30.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> "ServerThread":
        deadline = time.monotonic() + timeout_s
        while not self.state.ready:
            if self.state.load_error:
                raise RuntimeError(f"the model failed to load: {self.state.load_error}")
            if time.monotonic() > deadline:
                raise TimeoutError("the model did not become ready")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.state.draining = True
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- CLI -------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import add_model_options, add_plan_options

    d = ServeConfig()
    g = p.add_argument_group("model")
    add_model_options(g)
    add_plan_options(g)
    g.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images whose declared size exceeds this many pixels (default: 64 MP)")
    g = p.add_argument_group("service")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    g.add_argument("--max-batch", type=int, default=d.max_batch,
                   help=f"images per micro-batch; 1 turns batching off (default: {d.max_batch})")
    g.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"longest a batch waits to fill, in ms (default: {d.max_wait_ms:g})")
    g.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"classify requests admitted at once; past it 503 + Retry-After (default: {d.max_queue})")
    g.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help=f"largest request body; past it 413 (default: {d.max_body_bytes})")
    g.add_argument("--max-files", type=int, default=d.max_files,
                   help=f"most file parts in one multipart request (default: {d.max_files})")
    g.add_argument("--request-timeout", type=float, default=d.request_timeout_s,
                   help=f"seconds before an admitted request is answered 504 (default: {d.request_timeout_s:g})")
    g.add_argument("--preprocess-workers", type=int, default=d.preprocess_workers,
                   help=f"threads decoding and resizing images (default: {d.preprocess_workers})")
    g.add_argument("--pad-batches", choices=("auto", "on", "off"), default=d.pad_batches,
                   help="pad batches to power-of-two sizes warmed up at start; auto = on for inductor, "
                        "which recompiles for every new batch shape (default: auto)")
    g.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds to finish accepted requests before cancelling them (default: 30)")
    g.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    g.add_argument("--access-log", action="store_true", help="log every request")


def main(args: argparse.Namespace) -> int:
    from .classifier import load
    from .imaging import DEFAULT_MAX_PIXELS

    try:
        cfg = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                          max_body_bytes=args.max_body_bytes, max_files=args.max_files,
                          request_timeout_s=args.request_timeout, preprocess_workers=args.preprocess_workers,
                          pad_batches=args.pad_batches)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def loader():
        clf = load(args.model, weights=args.weights, backend=args.backend, precision=args.precision,
                   threads=args.threads, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
        if clf.random_init:
            log.warning("random weights (--weights none): labels and scores are meaningless")
        return clf

    exit_code = {"code": 0}
    server_ref: dict = {}

    def on_fatal(exc: BaseException) -> None:
        exit_code["code"] = 2
        if "server" in server_ref:
            server_ref["server"].should_exit = True

    app = create_app(loader, cfg, on_fatal=on_fatal)
    server = _make_server(app, args.host, args.port, log_level=args.log_level, access_log=args.access_log,
                          graceful_timeout_s=args.graceful_timeout)
    server_ref["server"] = server
    server.run()
    if exit_code["code"] == 0 and not server.started:
        return 2  # could not bind, or lifespan failed: uvicorn logged why
    return exit_code["code"]


__all__ = ["ServeConfig", "ServerThread", "add_arguments", "create_app", "main", "warmup_sizes"]
