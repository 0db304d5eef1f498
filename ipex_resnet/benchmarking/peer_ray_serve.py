"""A second peer serving stack for the Server scenario: Ray Serve, built as its documentation shows (a
``@serve.deployment`` class whose ``__call__`` takes the Starlette request, Ray Serve's own batching with
``@serve.batch(max_batch_size, batch_wait_timeout_s)``, one replica, Ray's HTTP proxy on the port),
serving the same ipex_resnet engine and precision as our service, with the same client (a raw JPEG body).

    python -m ipex_resnet.benchmarking.peer_ray_serve --model resnet18 --backend openvino --precision fp32 --port 8100

Ray's own processes (GCS, raylet, the HTTP proxy, the controller) share the cores with the replica: that
is what the distributed layer costs on one box.
"""

from __future__ import annotations

import signal
import sys
import threading

from ipex_resnet.benchmarking.peer_service import load_kwargs
from ipex_resnet.benchmarking.peer_service import parse_args as _peer_args

HINT = "pip install 'ray[serve]' (or pip install 'ipex_resnet[ray]')"
ROUTE = "/classify"


def build(load_kwargs: dict, max_batch: int, wait_s: float):
    """The Ray Serve application: one replica of the classifier deployment."""
    from ray import serve

    class Classifier:
        def __init__(self):
            import ipex_resnet

            self.clf = ipex_resnet.load(**load_kwargs, measure=False)

        @serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)
        async def classify(self, tensors: list):
            import numpy as np

            return self.clf.topk(self.clf(np.stack(tensors)), 5)

        async def __call__(self, request):
            import asyncio

            x = await asyncio.to_thread(self.clf.preprocess, await request.body())  # decode off the replica's loop
            return {"top": await self.classify(x)}

    return serve.deployment(num_replicas=1, max_ongoing_requests=256)(Classifier).bind()


def main(argv=None) -> int:
    args = _peer_args(argv)
    try:
        import ray
        from ray import serve
    except ImportError:
        print(f"error: the Ray Serve peer needs Ray Serve: {HINT}", file=sys.stderr)
        return 2
    kwargs = load_kwargs(args)
    stop = threading.Event()
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    for sig in (signal.SIGTERM, signal.SIGINT):  # after ray.init, which installs handlers of its own
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(
            build(kwargs, args.max_batch, args.batch_timeout_ms / 1e3),
            name="ipex_resnet_peer",
            route_prefix=ROUTE,
            blocking=False,
        )
        print(f"ready: Ray Serve on http://{args.host}:{args.port}{ROUTE}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["HINT", "ROUTE", "build", "main"]
