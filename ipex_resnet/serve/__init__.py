"""``ipex-resnet serve``: the classifier over HTTP (Starlette + uvicorn), with dynamic batching, limits
that hostile clients cannot hold, the Open Inference Protocol next to ``/v1``, Prometheus metrics, and
``--workers N`` processes pinned to their own cores.

Parts: :mod:`.config` (every option, once), :mod:`.handler` (the model side of a request: decode the
image bytes, predict, encode the answer), :mod:`.service` (one process's service, made of
:mod:`.lifecycle`, :mod:`.health`, :mod:`.admission`, :mod:`.pipeline` and :mod:`.rendering`), :mod:`.app`
(the ``/v1`` and health routes), :mod:`.oip` (``/v2``), :mod:`.limits`, :mod:`.budget` and
:mod:`.connections` (limits), :mod:`.requests` (what a request carries), :mod:`.batching`,
:mod:`.metrics`, :mod:`.server` (uvicorn), :mod:`.process` (one server process), :mod:`.workers`
(processes and pinning), :mod:`.errors` (typed errors, each with its status and code). The command line
is :mod:`ipex_resnet.cli.serve`.
"""

from __future__ import annotations

from ipex_resnet.serve.config import ServeConfig


def __getattr__(name: str) -> object:  # the app's parts, imported on first use (they need starlette and uvicorn)
    if name == "create_app":
        from ipex_resnet.serve.app import create_app

        return create_app
    if name == "Service":
        from ipex_resnet.serve.service import Service

        return Service
    if name == "Handler":
        from ipex_resnet.serve.handler import Handler

        return Handler
    if name == "ServerThread":
        from ipex_resnet.serve.server import ServerThread

        return ServerThread
    if name in ("Batcher", "QueueFull", "bucket_sizes", "warmup_sizes"):
        from ipex_resnet.serve import batching

        return getattr(batching, name)
    raise AttributeError(name)


__all__ = [
    "Batcher",
    "Handler",
    "QueueFull",
    "ServeConfig",
    "ServerThread",
    "Service",
    "bucket_sizes",
    "create_app",
    "warmup_sizes",
]
