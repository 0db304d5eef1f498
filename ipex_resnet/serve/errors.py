"""Typed service errors: each class carries its HTTP status and machine-readable ``code``, so a response
is built from the exception's type, never from its message text. Messages are written for the client;
internal exception text never goes into one."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal_error"
    headers: dict[str, str] = {}

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if headers is not None:
            self.headers = headers
        if code is not None:
            self.code = code

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class EmptyBody(BadRequest):
    code = "empty_body"


class BadMultipart(BadRequest):
    code = "bad_multipart"


class NoFiles(BadRequest):
    code = "no_files"


class TooManyFiles(BadRequest):
    code = "too_many_files"


class BadImage(BadRequest):
    """An image that cannot be used; ``code`` says why (``not_an_image``, ``empty_image``, ...)."""

    code = "bad_image"


class BadTensor(BadRequest):
    code = "bad_tensor"


class BadInferRequest(BadRequest):
    code = "bad_infer_request"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class RequestTimeout(ServiceError):
    """The body did not arrive within the body deadline: 408, and the connection is closed."""

    status, code = 408, "body_timeout"
    headers = {"Connection": "close"}


class BodyTooLarge(ServiceError):
    status, code = 413, "body_too_large"


class TooManyPixels(ServiceError):
    status, code = 413, "too_many_pixels"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class BadParameter(ServiceError):
    status, code = 422, "bad_parameter"


class ClientGone(ServiceError):
    """The client disconnected; nobody reads the answer. Logged as 499 (nginx's convention), never 500."""

    status, code = 499, "client_disconnected"


class InternalError(ServiceError):
    """A bug (any exception that is not a typed error): its message names only a reference to the server log."""

    status, code = 500, "internal_error"


class InferenceFailed(ServiceError):
    status, code = 500, "inference_failed"


class Unavailable(ServiceError):
    """503 with Retry-After: not ready, overloaded, shutting down, too many connections, stalled."""

    status, code = 503, "unavailable"


class Timeout(ServiceError):
    status, code = 504, "timeout"
