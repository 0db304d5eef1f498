"""What a runner needs from the process before it serves: torch's thread count, and warm-up calls."""

from __future__ import annotations

import sys
import warnings

from ipex_resnet import engines
from ipex_resnet.core.policy import Plan


def set_threads(plan: Plan) -> None:
    """Set torch's intra-op thread count to the plan's, when torch is (or will be) in use."""
    if engines.get(plan.backend).needs_torch or "torch" in sys.modules:
        import torch

        torch.set_num_threads(plan.threads)


def warm_up(runner, engine, example) -> None:
    """Run ``example`` through ``runner`` (every stream of a :class:`~ipex_resnet.engines.streams.Streams`,
    in its own thread) as many times as the engine needs to reach its steady speed."""

    def calls(run):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IPEX's "JIT pass will be deprecated" notice on the first run
            for _ in range(engine.warmup_iters):
                run(example)

    each = getattr(runner, "each", None)
    if each is not None:
        each(calls)
    else:
        calls(runner)


__all__ = ["set_threads", "warm_up"]
