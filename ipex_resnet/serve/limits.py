"""Limits a request must pass before it may take a place in the queue: the whole body within a byte
limit and a deadline, and the decode cost its images *declare* (read from their headers, no pixel
decoded), per image and summed over the request."""

from __future__ import annotations

import asyncio
import io
import warnings

from ipex_resnet.imaging.decode import ALLOWED_FORMATS, ALLOWED_TEXT, sniff_refused
from ipex_resnet.serve.budget import Reservation
from ipex_resnet.serve.errors import BadImage, BadRequest, BodyTooLarge, ClientGone, RequestTimeout, TooManyPixels


async def read_body(request, limit: int, deadline_s: float, held: Reservation) -> bytes:
    """The full body, or BodyTooLarge (413) / RequestTimeout (408) / ClientGone, or Unavailable (503
    ``body_budget``) when the worker's body budget cannot cover it. The limit holds while streaming; the
    deadline covers the whole body, so a slow sender cannot keep a request open. The bytes are taken from
    ``held``: a declared Content-Length all at once before any of it is read, a chunked body chunk by
    chunk as it arrives."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise BodyTooLarge(
                f"request body of {int(declared)} bytes exceeds the {limit}-byte limit", headers={"Connection": "close"}
            )
        held.take(int(declared))

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds the {limit}-byte limit", headers={"Connection": "close"})
            if declared is None:
                held.take(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), deadline_s)
    except asyncio.TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {deadline_s:g} s") from None
    except ClientDisconnect:
        raise ClientGone("the client disconnected while sending the body") from None


def declared_pixels(name: str, data: bytes, max_pixels: int) -> int:
    """Width x height as the image header declares it (PIL opens lazily: nothing is decoded). Only the
    decoder's allowed formats are tried, so no other Pillow plugin parses an untrusted upload; a known
    refused format is named as the decoder names it."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise BadImage(f"{name}: empty (zero bytes)", code="empty_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                w, h = img.size
    except UnidentifiedImageError:
        refused = sniff_refused(data[:32])
        if refused:
            raise BadImage(f"{name}: {refused} images are not accepted (accepted: {ALLOWED_TEXT})") from None
        raise BadImage(f"{name}: not an image (unrecognized format)", code="not_an_image") from None
    except Image.DecompressionBombError:
        raise BadImage(
            f"{name}: declared size exceeds the {max_pixels / 1e6:.0f} MP limit", code="image_too_large"
        ) from None
    except Exception:
        raise BadImage(f"{name}: cannot read the image header", code="bad_image") from None
    if w * h > max_pixels:
        raise BadImage(
            f"{name}: declared size {w}x{h} = {w * h / 1e6:.0f} MP exceeds the "
            f"{max_pixels / 1e6:.0f} MP limit (decompression bomb?)",
            code="image_too_large",
        )
    if w == 0 or h == 0:
        raise BadImage(f"{name}: image has no pixels ({w}x{h})", code="bad_image")
    return w * h


def check_request_pixels(images: list[tuple[str, bytes]], max_pixels: int, max_request_pixels: int) -> int:
    """Declared pixels of every image of one request; refuse the request if their sum is over the cap."""
    total = 0
    for name, data in images:
        total += declared_pixels(name, data, max_pixels)
        if total > max_request_pixels:
            raise TooManyPixels(
                f"the request's images declare more than {max_request_pixels / 1e6:.0f} MP in "
                f"total (limit per request); send fewer or smaller images per request"
            )
    return total
