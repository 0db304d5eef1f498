"""Errors -> responses. Routes raise, never render: a :class:`~ipex_resnet.serve.errors.ServiceError` is
answered by the app's exception handler (``Starlette(exception_handlers=...)``) with its status, code,
message and headers: ``{"error": {status, code, message}}``, or on the Open Inference Protocol's routes
(``/v2``) its own ``{"error": message}``. A 503 carries Retry-After; refusals (503, 504, 408, 499) are
counted in ``ipex_resnet_rejected_total`` by code.

Any other exception is a bug: :func:`route` turns it into an :class:`~ipex_resnet.serve.errors.InternalError`
(logged with a reference; the client sees 500 ``internal_error`` naming only the reference, never the
bug's text), rendered like every typed error. (A Starlette handler for ``Exception`` would not do: it runs
outside the app's middleware and re-raises after answering, and uvicorn then closes the connection.)
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ipex_resnet.serve.errors import ClientGone, InternalError, RequestTimeout, ServiceError, Timeout, Unavailable

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

log = logging.getLogger("ipex_resnet.serve")

OIP_PREFIX = "/v2"
#: the refusals counted by code (the service could not or would not answer in time)
REJECTED = (Unavailable, Timeout, RequestTimeout, ClientGone)
Endpoint = Callable[["Request"], Awaitable["Response"]]


def is_oip(path: str) -> bool:
    """Is ``path`` one of the Open Inference Protocol's routes (which render errors their own way)?"""
    return path == OIP_PREFIX or path.startswith(OIP_PREFIX + "/")


def internal_error(exc: BaseException) -> InternalError:
    """The typed error for a bug: logged (with its traceback) under a fresh reference."""
    ref = uuid.uuid4().hex[:12]
    log.error("internal error %s", ref, exc_info=exc)
    return InternalError(f"internal error (reference {ref}); the details are in the server log")


def route(path: str, endpoint: Endpoint, *, methods: list[str]) -> Route:
    """A Starlette route whose endpoint raises only typed errors (a bug becomes an :class:`InternalError`)."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    @functools.wraps(endpoint)
    async def typed(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ServiceError, HTTPException):
            raise
        except Exception as exc:
            raise internal_error(exc) from None

    return Route(path, typed, methods=methods)


class ErrorRenderer:
    """Renders typed errors for one service: ``retry_after_s`` for 503s, ``rejected`` the Prometheus counter."""

    def __init__(self, retry_after_s: int, rejected: Any):
        self.retry_after_s, self.rejected = retry_after_s, rejected

    def render(self, exc: ServiceError, *, oip: bool = False) -> JSONResponse:
        from starlette.responses import JSONResponse

        headers = dict(exc.headers)
        if isinstance(exc, Unavailable):
            headers["Retry-After"] = str(self.retry_after_s)
        if isinstance(exc, REJECTED):
            self.rejected.labels(exc.code).inc()
        return JSONResponse({"error": exc.message} if oip else exc.body(), exc.status, headers=headers)

    async def service_error(self, request: Request, exc: ServiceError) -> JSONResponse:
        return self.render(exc, oip=is_oip(request.url.path))

    def handlers(self) -> dict[Any, Any]:
        """The app's ``exception_handlers``."""
        return {ServiceError: self.service_error}


__all__ = ["REJECTED", "ErrorRenderer", "internal_error", "is_oip", "route"]
