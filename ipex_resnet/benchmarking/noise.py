"""The gate's noise floor: how large a change in a path's time ratio its own measurement could produce.

Each gate process (:mod:`.gate_timing`) yields one ratio per path and batch size (its fastest path call
over its fastest reference call). A run's ratio is the median of its processes' ratios; the noise is
the spread of the log ratios around their own run's median, pooled over the baseline and the run (so
a real change between them does not count as noise), one outlying process clipped (one in twelve was
seen 20% off the others). The floor is the change that spread can produce between a baseline of
``k_b`` processes and a run of ``k_c``: ``Z`` standard errors of the difference of two medians (a
median of k values has about pi/2 times the variance of their mean). ``Z`` comes from
``bench/gate_experiment.py`` (docs/benchmarks.md, "A gate that knows its own noise"): with it, false
REGRESSION verdicts stayed at or under 2.2% on every model and batch measured.

A change past both the user's tolerance and the noise floor is a regression; a change within the
tolerance passes where the floor is within it too; otherwise the noise is too high to judge the asked
tolerance and the gate says *inconclusive* (after taking more processes, :mod:`.gate_timing`): never
REGRESSION on noise, and never PASS on a slowdown the noise could hide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

NOISE_Z = 3.25
CLIP = 3.0
PASS, REGRESSION, INCONCLUSIVE = "PASS", "REGRESSION", "INCONCLUSIVE"


def log_spread(*runs: Sequence[float]) -> float | None:
    """The spread of the log ratios around each run's own median, pooled over the runs: the root mean
    square of the deviations (the median element of an odd run, 0 by construction, left out), each
    clipped at ``CLIP`` robust standard deviations (1.4826 x the median deviation, of all runs or of its
    own run if larger) so that one badly placed process widens the floor no more than a few typical
    ones do, while a run that is noisy throughout keeps its noise. None without a deviation (one
    process per run)."""
    per_run: list[list[float]] = []
    for run in runs:
        if not run:
            continue
        mid = math.log(median(run))
        d = sorted(abs(math.log(x) - mid) for x in run)
        per_run.append(d[1:] if len(d) % 2 else d)
    devs = [d for run in per_run for d in run]
    if not devs:
        return None
    pooled = median(devs)
    clipped = [min(d, CLIP * 1.4826 * max(pooled, median(run))) for run in per_run if run for d in run]
    return math.sqrt(sum(d * d for d in clipped) / len(clipped))


def floor(spread: float | None, k_base: int, k_run: int, z: float = NOISE_Z) -> float:
    """The relative change noise of ``spread`` can produce between medians of ``k_base`` and ``k_run``
    processes (0 when the spread is unknown: a gate without per-process ratios judges as before)."""
    if spread is None or k_base < 1 or k_run < 1:
        return 0.0
    return math.expm1(z * spread * math.sqrt(math.pi / 2 * (1 / k_base + 1 / k_run)))


@dataclass(frozen=True)
class Judgement:
    """One time check: the baseline's and the run's ratio (medians of their processes), the change, the
    noise floor, the smallest slowdown this check could detect, and the verdict."""

    baseline: float
    current: float
    floor: float
    tolerance: float
    processes: tuple[int, int]

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1

    @property
    def detectable(self) -> float:
        return max(self.tolerance, self.floor)

    @property
    def verdict(self) -> str:
        """REGRESSION past both the tolerance and the floor; PASS within the tolerance where the floor is
        too (or where even the floor added to the change stays within it: a clear speed-up);
        INCONCLUSIVE otherwise: the noise is too high to judge the asked tolerance."""
        if self.change > self.detectable:
            return REGRESSION
        if self.change <= self.tolerance and (
            self.floor <= self.tolerance or self.change + self.floor <= self.tolerance
        ):
            return PASS
        return INCONCLUSIVE


def judge(base: Sequence[float], current: Sequence[float], tolerance: float, z: float = NOISE_Z) -> Judgement:
    """Judge a run's per-process ratios against a baseline's."""
    f = floor(log_spread(base, current), len(base), len(current), z)
    return Judgement(median(base), median(current), f, tolerance, (len(base), len(current)))


def self_floor(base: Sequence[float], z: float = NOISE_Z) -> float:
    """The floor a gate of as many processes as this baseline would have against it, from the
    baseline's spread alone (what ``--save-baseline`` reports, and extends the baseline to lower)."""
    return floor(log_spread(base), len(base), len(base), z)


__all__ = [
    "CLIP",
    "INCONCLUSIVE",
    "Judgement",
    "NOISE_Z",
    "PASS",
    "REGRESSION",
    "floor",
    "judge",
    "log_spread",
    "self_floor",
]
