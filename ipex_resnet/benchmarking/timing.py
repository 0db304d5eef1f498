"""Timing: quantiles, interleaved round-robin timing, ratio estimators, and the injected slowdown
that checks the gate."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ipex_resnet.errors import ConfigError

Runner = Callable[[object], object]
SLOWDOWN_ENV = "IPEX_RESNET_BENCH_SLOWDOWN"
RATIO_ESTIMATORS = ("p50", "paired", "p25", "min")
# The estimator the gates use within one process (docs/benchmarks.md): the fastest candidate call over the
# fastest interleaved reference call. The package's gate (``ipex-resnet bench --gate``, the pytest plugin)
# takes the median of several fresh processes' ratios and judges it against their spread
# (:mod:`.gate_timing`, :mod:`.noise`); bench/'s suites judge pytest-benchmark's rounds in one process.
GATE_ESTIMATOR = "min"


def quantile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), ``q`` in [0, 1]."""
    s = sorted(samples)
    if not s:
        return math.nan
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Seconds per call -> milliseconds p50/p90/p99/mean/min and the sample count."""
    return {
        "p50_ms": quantile(samples, 0.5) * 1e3,
        "p90_ms": quantile(samples, 0.9) * 1e3,
        "p99_ms": quantile(samples, 0.99) * 1e3,
        "mean_ms": (sum(samples) / len(samples)) * 1e3 if samples else math.nan,
        "min_ms": min(samples) * 1e3 if samples else math.nan,
        "n": len(samples),
    }


def time_interleaved(
    runners: Mapping[str, Runner],
    x,
    *,
    rounds: int,
    calls_per_round: int = 1,
    switch_warmup: int = 0,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call for every runner, measured round-robin (order rotated every round).

    Interleaving means a burst of noise from a neighbour lands on all paths alike, so ratios between
    paths stay stable even when absolute times drift. ``switch_warmup`` untimed calls precede each
    path's block: OpenMP, TBB and ORT thread pools spin for a while after a call, and on a small
    machine the first call after a switch pays for the previous runtime's spinning threads.
    """
    names = list(runners)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = runners[name]
            for _ in range(switch_warmup):
                fn(x)
            for _ in range(calls_per_round):
                t0 = clock()
                fn(x)
                out[name].append(clock() - t0)
        if progress:
            progress(r + 1, rounds)
    return out


def time_for(
    fn: Runner,
    x,
    budget_s: float,
    *,
    min_calls: int = 5,
    max_calls: int = 2000,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Seconds per call of ``fn(x)``, called back to back for about ``budget_s`` seconds."""
    out: list[float] = []
    end = clock() + budget_s
    while len(out) < max_calls and (len(out) < min_calls or clock() < end):
        t0 = clock()
        fn(x)
        out.append(clock() - t0)
    return out


def rounds_for(per_round_s: float, budget_s: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, budget_s / max(per_round_s, 1e-6))))


def ratio_estimates(cand: Sequence[float], ref: Sequence[float]) -> dict[str, float]:
    """Candidate / reference time, several ways, from interleaved samples (cand[i] ran next to ref[i]).

    ``p50``: ratio of medians; ``paired``: median of per-round ratios (cancels noise that lasts a
    round); ``p25`` / ``min``: ratio of lower quantiles (noise only ever adds time).
    """
    n = min(len(cand), len(ref))
    return {
        "p50": quantile(cand, 0.5) / quantile(ref, 0.5),
        "paired": quantile([cand[i] / ref[i] for i in range(n)], 0.5),
        "p25": quantile(cand, 0.25) / quantile(ref, 0.25),
        "min": min(cand) / min(ref),
    }


def paired_ratio(
    candidate: Runner, reference: Runner, x, rounds: int = 32, *, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, list[float], list[float]]:
    """``rounds`` rounds of (reference call, candidate call), the package gate's timing. Returns (candidate /
    reference time by the gate's estimator, the fastest over the fastest; candidate seconds; reference seconds)."""
    cand: list[float] = []
    ref: list[float] = []
    for _ in range(rounds):
        t0 = clock()
        reference(x)
        ref.append(clock() - t0)
        t0 = clock()
        candidate(x)
        cand.append(clock() - t0)
    return ratio_estimates(cand, ref)[GATE_ESTIMATOR], cand, ref


def slowdown_fraction() -> float:
    """The injected slowdown from ``IPEX_RESNET_BENCH_SLOWDOWN`` (0.10 = every call 10% slower)."""
    raw = os.environ.get(SLOWDOWN_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{SLOWDOWN_ENV}={raw!r} is not a number (0.10 means 10% slower)") from None
    if not 0 <= value < 10:
        raise ConfigError(f"{SLOWDOWN_ENV}={raw!r} must be between 0 and 10")
    return value


class _Slowed:
    """``fn``, every call ``fraction`` slower; ``__wrapped__`` is ``fn`` (as ``functools.wraps`` would set)."""

    def __init__(self, fn: Runner, fraction: float, clock: Callable[[], float]):
        self.__wrapped__, self.fraction, self.clock = fn, fraction, clock

    def __call__(self, x: Any) -> Any:
        t0 = self.clock()
        out = self.__wrapped__(x)
        end = t0 + (self.clock() - t0) * (1 + self.fraction)
        while self.clock() < end:
            pass
        return out


def inject_slowdown(fn: Runner, fraction: float, *, clock: Callable[[], float] = time.perf_counter) -> Runner:
    """Make every call ``fraction`` slower by spinning after it (extra CPU work, not sleep)."""
    if fraction <= 0:
        return fn
    return _Slowed(fn, fraction, clock)


__all__ = [
    "GATE_ESTIMATOR",
    "RATIO_ESTIMATORS",
    "SLOWDOWN_ENV",
    "inject_slowdown",
    "paired_ratio",
    "quantile",
    "ratio_estimates",
    "rounds_for",
    "slowdown_fraction",
    "summarize",
    "time_for",
    "time_interleaved",
]
