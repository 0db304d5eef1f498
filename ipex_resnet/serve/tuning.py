"""The service shaped by its latency target: the model's measured latency-vs-batch curve decides the
largest micro-batch the batcher may form, and a target that one batch-1 call already misses is refused.

Under load an image can arrive just as a batch of ``b`` enters the model: it waits for that batch, then
runs in the next, so its time in the model's hands is about ``2 x latency(b)`` plus the batcher's wait.
:func:`batch_cap` keeps that within :data:`MODEL_SHARE` of the target (the rest is for decoding, the
queue and HTTP). On a CPU where a batch buys little throughput this keeps batches small, which is what
keeps the tail short.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np

from ipex_resnet.errors import ConfigError

MODEL_SHARE = 0.75  # of the p99 target: two batch times and the wait (decode, queue and HTTP take the rest)
REPEATS = 5


def latency_curve(
    predict: Callable[[np.ndarray], object],
    image_shape: Sequence[int],
    sizes: Sequence[int],
    stop_above_ms: float | None = None,
) -> dict[int, float]:
    """Median milliseconds of ``predict`` per batch size (already warmed up), smallest first; sizes past
    the first that takes longer than ``stop_above_ms`` are not measured."""
    curve: dict[int, float] = {}
    for n in sorted(sizes):
        x = np.random.default_rng(n).standard_normal((n, *image_shape), dtype=np.float32)
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            predict(x)
            times.append((time.perf_counter() - t) * 1e3)
        curve[n] = statistics.median(times)
        if stop_above_ms is not None and curve[n] > stop_above_ms:
            break
    return curve


def check_target(p99_ms: float, curve: dict[int, float], what: str) -> None:
    """Refuse a target below one batch-1 model call (ConfigError, one line with the measured minimum)."""
    one = curve[min(curve)]
    if one > p99_ms:
        raise ConfigError(
            f"--p99-ms {p99_ms:g} cannot be met here: one batch-1 call of {what} takes {one:.1f} ms "
            f"on this machine; ask for at least {math.ceil(one)} ms (or a faster precision or engine)"
        )


def batch_cap(p99_ms: float, max_wait_ms: float, curve: dict[int, float]) -> int:
    """The largest measured batch size ``b`` with ``2 x latency(b) + max_wait`` within the model's share
    of the target (at least 1)."""
    budget = MODEL_SHARE * p99_ms
    fits = [n for n, ms in curve.items() if 2 * ms + max_wait_ms <= budget]
    return max(fits) if fits else 1


def describe(p99_ms: float, cap: int, curve: dict[int, float]) -> str:
    points = ", ".join(f"b{n} {ms:.1f} ms" for n, ms in curve.items())
    return f"p99 target {p99_ms:g} ms -> max batch {cap} (model latency {points})"


__all__ = ["MODEL_SHARE", "batch_cap", "check_target", "describe", "latency_curve"]
