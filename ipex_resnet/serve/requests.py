"""What a classify request carries: its content kind, its images (raw body or multipart file parts),
and whether its client is still there."""

from __future__ import annotations

from ipex_resnet.serve.errors import BadMultipart, EmptyBody, NoFiles, TooManyFiles, UnsupportedMediaType

RAW_TYPES = ("application/octet-stream",)


async def disconnected(request) -> None:
    """Returns when the client has gone (call only after the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def content_kind(request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        return "multipart"
    if ctype == "" or ctype in RAW_TYPES or ctype.startswith("image/"):
        return "raw"
    raise UnsupportedMediaType(
        f"content type {ctype!r} is not supported; send the image as the raw body with "
        "Content-Type image/* or application/octet-stream, or as multipart/form-data file parts"
    )


async def images_from(request, kind: str, body: bytes, max_files: int) -> list[tuple[str, bytes]]:
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    if kind == "raw":
        if not body:
            raise EmptyBody("the request body is empty; send an image")
        return [(request.query_params.get("name") or "body", body)]

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=max_files, max_fields=100)
    except Exception as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or "malformed"
        raise BadMultipart(f"cannot parse the multipart body: {detail}") from None
    try:
        files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
    finally:
        await form.close()
    if not files:
        raise NoFiles("the multipart body has no file parts; add the image as a file field")
    if len(files) > max_files:
        raise TooManyFiles(f"{len(files)} files in one request; the limit is {max_files}")
    return files


__all__ = ["RAW_TYPES", "content_kind", "disconnected", "images_from"]
