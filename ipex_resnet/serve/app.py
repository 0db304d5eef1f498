"""The Starlette app: the routes of ``/v1``, ``/`` and the health and metrics endpoints (the Open Inference
Protocol's ``/v2`` routes are in :mod:`.oip`), on one :class:`~ipex_resnet.serve.service.Service`. Routes
raise typed errors (:mod:`.errors`) and never render them: the app's exception handlers do
(:mod:`.rendering`). What is done with the model (decode, predict, encode) is the
:class:`~ipex_resnet.serve.handler.Handler`'s; the steps of a request are the
:class:`~ipex_resnet.serve.pipeline.Pipeline`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ipex_resnet.serve.config import ServeConfig
from ipex_resnet.serve.limits import read_body
from ipex_resnet.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ipex_resnet.serve.metrics import MetricsMiddleware
from ipex_resnet.serve.rendering import route
from ipex_resnet.serve.requests import content_kind, images_from
from ipex_resnet.serve.service import Service

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ipex_resnet.core.classifier import Classifier

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def _routes(svc: Service) -> list:
    """``/``, the health endpoints, ``/metrics`` and ``/v1/classify``. Errors are raised, and rendered by
    the app's exception handlers."""
    from starlette.responses import FileResponse, JSONResponse, Response

    cfg, pipeline = svc.cfg, svc.pipeline

    async def healthz(request: Request) -> Response:
        problem = svc.health.liveness()
        if problem:
            raise problem
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> Response:
        problem = svc.health.readiness()
        if problem:
            raise problem
        return JSONResponse({"status": "ready", **svc.life.loaded().handler.info, "max_batch": cfg.max_batch})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(svc.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    async def classify(request: Request) -> Response:
        with svc.bodies.hold() as held:  # the body's bytes count against the budget until this returns
            svc.health.check_accepting()
            topk = pipeline.parse_topk(request.query_params.get("topk"))
            kind = content_kind(request)
            body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s, held)
            images = await images_from(request, kind, body, cfg.max_files)
            tops = await pipeline.run(request, lambda: pipeline.preprocess(images, topk), topk)
            handler = svc.life.loaded().handler
            return JSONResponse(handler.encode_response([name for name, _ in images], tops, topk))

    return [
        route("/", index, methods=["GET"]),
        route("/healthz", healthz, methods=["GET"]),
        route("/readyz", readyz, methods=["GET"]),
        route("/metrics", metrics_endpoint, methods=["GET"]),
        route("/v1/classify", classify, methods=["POST"]),
    ]


def create_app(
    loader: Callable[[], Classifier],
    config: ServeConfig | None = None,
    *,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> MetricsMiddleware:
    """A Starlette app serving the classifier that ``loader()`` returns (called in a thread at startup).

    ``/healthz`` answers 200 while the process can make progress (also while loading);
    ``/readyz`` and inference answer 503 until the classifier is loaded and warmed up.
    """
    from starlette.applications import Starlette

    from ipex_resnet.serve.oip import oip_routes

    cfg = config or ServeConfig()
    svc = Service(loader, cfg, on_fatal)
    routes = [*_routes(svc), *oip_routes(svc)]
    app = Starlette(routes=routes, lifespan=svc.lifespan, exception_handlers=svc.errors.handlers())
    app.state.service = svc
    app.state.config = cfg
    return MetricsMiddleware(app, svc.metrics, routes)


__all__ = ["Service", "create_app"]
