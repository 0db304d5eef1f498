"""The peer serving stack for the Server scenario: LitServe, built as its documentation shows (a
``LitAPI`` with ``setup`` / ``decode_request`` / ``batch`` / ``predict`` / ``unbatch`` /
``encode_response``, LitServe's own batching with ``max_batch_size`` and ``batch_timeout``, an image
uploaded as a multipart file), serving the same ipex_resnet engine and precision as our service.

    python -m ipex_resnet.benchmarking.peer_service --model resnet18 --backend openvino --precision fp32 --port 8100
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import TYPE_CHECKING, Any

from ipex_resnet.models.spec import ModelSpec

ls: Any = None
try:
    ls = importlib.import_module("litserve")
except ImportError:  # the module stays importable; main() says how to install LitServe
    pass

if TYPE_CHECKING or ls is None:

    class _LitAPI:
        """What this module uses of LitServe's ``LitAPI`` (its base without LitServe: main() says how to install it)."""

        def __init__(self, max_batch_size: int = 1, batch_timeout: float = 0.0) -> None:
            self.max_batch_size, self.batch_timeout = max_batch_size, batch_timeout

else:
    _LitAPI = ls.LitAPI

HINT = "pip install litserve (or pip install 'ipex_resnet[loadgen]')"


class ClassifierAPI(_LitAPI):
    """Top-5 of an uploaded image (form field ``image``) from ``ipex_resnet.load(**load_kwargs)``."""

    def __init__(self, load_kwargs: dict, max_batch: int, batch_timeout_s: float):
        super().__init__(max_batch_size=max_batch, batch_timeout=batch_timeout_s)
        self.load_kwargs = load_kwargs

    def setup(self, device):
        import ipex_resnet

        self.clf = ipex_resnet.load(**self.load_kwargs, measure=False)

    def decode_request(self, request):
        return self.clf.preprocess(request["image"].file.read())

    def batch(self, inputs):
        import numpy as np

        return np.stack(inputs)

    def predict(self, x):
        return self.clf.topk(self.clf(x), 5)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"top": output}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="LitServe serving an ipex_resnet engine (the Server scenario's peer)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--preset", default=None, metavar="JSON", help="preprocessing preset JSON file")
    ap.add_argument("--categories", default=None, metavar="FILE", help="class names, one per line")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--calibration", default=None, metavar="DIR")
    ap.add_argument("--accept-accuracy", action="store_true")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=5.0,
        help="LitServe's batch_timeout, in ms (default 5, as our service's --max-wait-ms)",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8100)
    return ap.parse_args(argv)


def load_kwargs(args: argparse.Namespace) -> dict:
    """``ipex_resnet.load``'s arguments from the peer's options (the preset and categories read from their files)."""
    spec = ModelSpec.from_options(args.model, args.weights, preset=args.preset, categories=args.categories)
    return {
        "model": spec.model,
        **spec.load_kwargs(),
        "backend": args.backend,
        "precision": args.precision,
        "threads": args.threads,
        "calibration": args.calibration,
        "accept_accuracy": args.accept_accuracy,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if ls is None:
        print(f"error: the peer serving stack needs LitServe: {HINT}", file=sys.stderr)
        return 2
    api = ClassifierAPI(load_kwargs(args), args.max_batch, args.batch_timeout_ms / 1e3)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)
    server.run(host=args.host, port=args.port, generate_client_file=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
