"""The Open Inference Protocol (KServe v2 / Triton HTTP), next to ``/v1``: Triton and KServe clients work
unchanged. Inputs: ``image`` (BYTES, shape [N]: encoded images) or ``tensor`` (FP32, shape [N,3,H,W]:
preprocessed, as ``clf.preprocess`` makes them). Outputs: top-k ``labels`` (BYTES), ``scores`` (FP32),
``indices`` (INT64), each [N,k]; ``k`` from the request parameter ``topk`` (default 5) or an output's
``classification`` parameter (Triton's classification extension: ``"score:index:label"`` strings).
Tensor data as JSON or in the binary extension (``Inference-Header-Content-Length``); JSON BYTES
elements are base64."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ipex_resnet.serve.errors import BadInferRequest, BadTensor, NotFound, TooManyPixels
from ipex_resnet.serve.handler import Handler
from ipex_resnet.serve.limits import read_body
from ipex_resnet.serve.pipeline import Prepare
from ipex_resnet.serve.rendering import route
from ipex_resnet.serve.service import Service

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

VERSION = "1"
HEADER_LENGTH = "inference-header-content-length"
NP_TYPES = {"FP32": np.float32, "INT64": np.int64}


def _unpack_bytes(raw: bytes) -> list[bytes]:
    """Triton's BYTES binary layout: each element is a 4-byte little-endian length and the bytes."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise BadInferRequest("truncated BYTES tensor data")
        (n,) = struct.unpack_from("<I", raw, i)
        if i + 4 + n > len(raw):
            raise BadInferRequest("truncated BYTES tensor data")
        out.append(raw[i + 4 : i + 4 + n])
        i += 4 + n
    return out


def _pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def parse_request(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise BadInferRequest(f"{HEADER_LENGTH} {header_length!r} does not fit the {len(body)}-byte body")
        head, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        head, binary = body, b""
    try:
        doc = json.loads(head)
    except json.JSONDecodeError as exc:
        raise BadInferRequest(f"the inference request is not valid JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise BadInferRequest("the inference request is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise BadInferRequest("the inference request needs an 'inputs' list with one input")
    return doc, binary


def _input_data(inp: dict, binary: bytes) -> object:
    """The input's JSON data, or its raw bytes from the start of the binary section (one input only)."""
    params = inp.get("parameters") or {}
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise BadInferRequest(f"input {inp.get('name')!r}: binary_data_size {size!r} does not fit the body")
        return binary[:size]
    if "data" not in inp:
        raise BadInferRequest(f"input {inp.get('name')!r} has neither 'data' nor binary data")
    return inp["data"]


def _flatten(data) -> list:
    out = []
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x))
        else:
            out.append(x)
    return out


# -- requests -----------------------------------------------------------------------------------------
def check_model(svc: Service, name: str, version: str | None = None) -> Handler:
    """The handler, unless the service is not ready or does not serve model ``name`` (version ``version``,
    if given): then the error."""
    problem = svc.health.readiness()
    if problem is not None:
        raise problem
    handler = svc.life.loaded().handler
    model = handler.info["model"]
    if name != model or version not in (None, "", VERSION):
        raise NotFound(
            f"unknown model {name!r}"
            + (f" version {version!r}" if version else "")
            + f"; this server serves {model!r} version {VERSION}"
        )
    return handler


def model_metadata(handler: Handler, max_batch: int) -> dict:
    c, h, w = handler.image_shape
    info = handler.info
    return {
        "name": info["model"],
        "versions": [VERSION],
        "platform": f"pytorch_{info['backend']}",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "tensor", "datatype": "FP32", "shape": [-1, c, h, w]},
        ],
        "outputs": [
            {"name": "labels", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "indices", "datatype": "INT64", "shape": [-1, -1]},
        ],
        "parameters": {"precision": info["precision"], "max_batch": max_batch},
    }


def _image_items(data, n: int) -> list[bytes]:
    """The encoded images of input ``image``: the binary BYTES layout, or base64 strings in JSON."""
    if isinstance(data, bytes):
        items = _unpack_bytes(data)
    else:
        try:
            items = [base64.b64decode(x, validate=True) for x in _flatten(data)]
        except (TypeError, ValueError):
            raise BadInferRequest("input 'image': JSON BYTES elements must be base64 strings") from None
    if len(items) != n:
        raise BadInferRequest(f"input 'image': shape says {n} element(s), the data has {len(items)}")
    return items


def _tensor_batch(
    image_shape: tuple[int, int, int], max_pixels: int, data: Any, dtype: object, shape: list[int]
) -> np.ndarray:
    """Input ``tensor``: preprocessed images, FP32 of shape [N, *image_shape], finite, within the pixel cap
    (``max_pixels`` per request)."""
    n = shape[0]
    want = [n, *image_shape]
    if dtype != "FP32" or shape != want:
        raise BadTensor(f"input 'tensor' must be FP32 of shape {want} (preprocessed images), got {dtype} {shape}")
    if n * shape[2] * shape[3] > max_pixels:
        raise TooManyPixels(f"the request carries more than {max_pixels / 1e6:.0f} MP")
    count = int(np.prod(want))
    if isinstance(data, bytes):
        if len(data) != 4 * count:
            raise BadTensor(f"input 'tensor': {len(data)} bytes of data for shape {want} (want {4 * count})")
        arr = np.frombuffer(data, dtype="<f4")
    else:
        flat = _flatten(data)
        if len(flat) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
            raise BadTensor(f"input 'tensor': want {count} numbers for shape {want}")
        arr = np.asarray(flat, dtype=np.float32)
    t = arr.astype(np.float32).reshape(want)
    if not bool(np.isfinite(t).all()):
        raise BadTensor("input 'tensor' holds NaN or infinite values")
    return t


def inputs_to_prepare(svc: Service, handler: Handler, doc: dict, binary: bytes, topk: int | None = None) -> Prepare:
    """Validate the single input and return ``prepare``, where ``await prepare()`` -> tensors (or, with
    the result cache and ``topk``, result-cache hits and misses for images)."""
    if len(doc["inputs"]) != 1:
        raise BadInferRequest(f"send exactly one input ('image' or 'tensor'), got {len(doc['inputs'])}")
    inp = doc["inputs"][0]
    name, dtype, shape = inp.get("name"), inp.get("datatype"), inp.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadInferRequest(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    n = shape[0]
    if not 1 <= n <= svc.cfg.max_files:
        raise BadInferRequest(f"input {name!r}: batch of {n}; send 1 to {svc.cfg.max_files} images per request")
    data = _input_data(inp, binary)
    if name == "image":
        if dtype != "BYTES" or shape not in ([n], [n, 1]):
            raise BadInferRequest(f"input 'image' must be BYTES of shape [N] or [N,1], got {dtype} {shape}")
        images = [(f"image[{i}]", b) for i, b in enumerate(_image_items(data, n))]
        return lambda: svc.pipeline.preprocess(images, topk)
    if name == "tensor":
        t = _tensor_batch(handler.image_shape, svc.cfg.max_request_pixels, data, dtype, shape)

        async def prepare() -> list[Any]:
            return list(t)

        return prepare
    raise BadInferRequest(f"unknown input {name!r}; this model takes 'image' (BYTES) or 'tensor' (FP32)")


def requested_outputs(parse_topk: Callable[[Any], int], doc: dict) -> tuple[list[tuple[str, bool, int | None]], int]:
    """The outputs to send as (name, binary?, classification count or None), and the top-k to compute
    (``parse_topk``: the pipeline's check of a client's top-k)."""
    params = doc.get("parameters") or {}
    k = parse_topk(params.get("topk"))
    default_binary = bool(params.get("binary_data_output", False))
    outs = doc.get("outputs")
    if not outs:
        return [(o, default_binary, None) for o in ("labels", "scores", "indices")], k
    chosen = []
    for o in outs:
        oname = o.get("name") if isinstance(o, dict) else None
        if oname not in ("labels", "scores", "indices"):
            raise BadInferRequest(f"unknown output {oname!r}; outputs are 'labels', 'scores', 'indices'")
        op = o.get("parameters") or {}
        cls = op.get("classification")
        if cls is not None:
            k = max(k, parse_topk(cls))
        chosen.append((oname, bool(op.get("binary_data", default_binary)), cls))
    return chosen, k


# -- responses ----------------------------------------------------------------------------------------
COLUMNS = {
    "labels": ("BYTES", lambda r: r["label"].encode()),
    "scores": ("FP32", lambda r: r["score"]),
    "indices": ("INT64", lambda r: r["index"]),
}


def _output(tops: list[list[dict]], oname: str, binary: bool, cls, k: int) -> tuple[dict, bytes | None]:
    """One output tensor: its JSON description (with the data, unless binary) and its binary data."""
    if cls is not None:  # classification extension: "score:index:label", top `cls` per image
        dtype = "BYTES"
        rows = [[f"{r['score']:f}:{r['index']}:{r['label']}".encode() for r in top[: int(cls)]] for top in tops]
    else:
        dtype, get = COLUMNS[oname]
        rows = [[get(r) for r in top[:k]] for top in tops]
    flat = [v for row in rows for v in row]
    out: dict[str, Any] = {"name": oname, "datatype": dtype, "shape": [len(rows), len(rows[0]) if rows else 0]}
    if not binary:
        out["data"] = [v.decode() for v in flat] if dtype == "BYTES" else flat
        return out, None
    raw = (
        _pack_bytes(flat)
        if dtype == "BYTES"
        else np.asarray(flat, dtype=NP_TYPES[dtype]).astype(np.dtype(NP_TYPES[dtype]).newbyteorder("<")).tobytes()
    )
    out["parameters"] = {"binary_data_size": len(raw)}
    return out, raw


def encode_response(
    model: str, tops: list[list[dict]], outputs: list[tuple[str, bool, int | None]], k: int, doc: dict
) -> Response:
    """The inference response: JSON, or JSON then the binary outputs (binary tensor data extension)."""
    from starlette.responses import Response

    results, blobs = [], []
    for oname, binary, cls in outputs:
        out, raw = _output(tops, oname, binary, cls, k)
        results.append(out)
        if raw is not None:
            blobs.append(raw)
    head = {"model_name": model, "model_version": VERSION, "outputs": results}
    if "id" in doc:
        head["id"] = doc["id"]
    text = json.dumps(head).encode()
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(
        text + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(text))},
    )


# -- routes -------------------------------------------------------------------------------------------
async def server_metadata(request: Request) -> Response:
    from starlette.responses import JSONResponse

    from ipex_resnet.util.version import __version__

    return JSONResponse(
        {"name": "ipex-resnet", "version": __version__, "extensions": ["binary_tensor_data", "classification"]}
    )


def oip_routes(svc: Service) -> list:
    """The ``/v2`` routes of the service ``svc``. Errors are raised, and rendered in the protocol's format
    by the app's exception handlers (:mod:`.rendering` knows the ``/v2`` paths)."""
    from starlette.responses import JSONResponse

    cfg = svc.cfg

    async def live(request: Request) -> Response:
        problem = svc.health.liveness()
        if problem:
            raise problem
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        problem = svc.health.readiness()
        if problem:
            raise problem
        return JSONResponse({"ready": True})

    def model(request: Request) -> Handler:
        return check_model(svc, request.path_params["name"], request.path_params.get("version"))

    async def metadata(request: Request) -> Response:
        return JSONResponse(model_metadata(model(request), cfg.max_batch))

    async def model_ready(request: Request) -> Response:
        return JSONResponse({"name": model(request).info["model"], "ready": True})

    async def infer(request: Request) -> Response:
        with svc.bodies.hold() as held:  # the body's bytes count against the budget until this returns
            handler = model(request)
            body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s, held)
            doc, binary = parse_request(body, request.headers.get(HEADER_LENGTH))
            outputs, k = requested_outputs(svc.pipeline.parse_topk, doc)
            prepare = inputs_to_prepare(svc, handler, doc, binary, k)
            tops = await svc.pipeline.run(request, prepare, k)
            return encode_response(handler.info["model"], tops, outputs, k, doc)

    routes = [
        route("/v2", server_metadata, methods=["GET"]),
        route("/v2/health/live", live, methods=["GET"]),
        route("/v2/health/ready", ready, methods=["GET"]),
    ]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            route(base, metadata, methods=["GET"]),
            route(base + "/ready", model_ready, methods=["GET"]),
            route(base + "/infer", infer, methods=["POST"]),
        ]
    return routes


__all__ = ["oip_routes"]
