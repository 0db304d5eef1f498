"""The baseline gate: pure functions over pytest-benchmark results (their ``extra_info``).

Time is judged as each path's ratio to the eager FP32 reference measured interleaved in the same
run (raw seconds drift by tens of percent on a shared machine; the ratio does not); memory as peak
RSS growth. Where both sides carry each process's ratio (``process_ratios``, the package gate's
:mod:`.gate_timing`), a time check knows its noise (:mod:`.noise`): a change past the tolerance but
within the noise floor is *inconclusive*, never a regression. Thresholds and their measured catch /
false-alarm rates: docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ipex_resnet.benchmarking import noise
from ipex_resnet.benchmarking.matrix import REFERENCE
from ipex_resnet.benchmarking.options import MEMORY_SLACK_MB, MEMORY_TOLERANCE, TIME_TOLERANCE

TIME_KEYS = ("ratio_to_ref",)
MEMORY_KEYS = ("load_delta_rss_mb", "infer_delta_rss_mb", "cold_peak_rss_mb")


@dataclass
class Finding:
    name: str
    metric: str
    baseline: float
    current: float
    limit: float
    floor: float | None = None  # a time check's noise floor (None: judged without one)
    processes: tuple[int, int] | None = None  # (baseline, this run) processes behind a time check

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1 if self.baseline else math.inf

    def describe(self) -> str:
        noise_note = "" if self.floor is None else f", noise floor {self.floor:.1%}"
        return (
            f"{self.name}: {self.metric} {self.current:.4g} vs baseline {self.baseline:.4g} "
            f"({self.change:+.1%}, limit {self.limit:.4g}{noise_note})"
        )


@dataclass
class GateResult:
    regressions: list[Finding] = field(default_factory=list)
    checked: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    inconclusive: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions and not self.inconclusive

    @property
    def verdict(self) -> str:
        """FAIL (a regression), INCONCLUSIVE (no regression, but a change the noise could have made) or PASS."""
        return "FAIL" if self.regressions else noise.INCONCLUSIVE if self.inconclusive else "PASS"


def gate(
    current: Iterable[Mapping],
    baseline: Iterable[Mapping],
    *,
    time_tolerance: float = TIME_TOLERANCE,
    memory_tolerance: float = MEMORY_TOLERANCE,
    memory_slack_mb: float = MEMORY_SLACK_MB,
) -> GateResult:
    """Compare benchmarks (pytest-benchmark dicts, with ``extra_info``) against a baseline.

    Time: ``extra_info["ratio_to_ref"]`` may grow by ``time_tolerance``; with ``process_ratios`` on both
    sides, by the larger of the tolerance and the noise floor, and a growth between the two is
    inconclusive (:func:`ipex_resnet.benchmarking.noise.judge`). Memory: each ``MEMORY_KEYS``
    value may grow by ``memory_tolerance`` plus ``memory_slack_mb`` (small deltas are page-granular).
    Benchmarks without a baseline entry are listed in ``missing``, never failed.
    """
    base = {b["fullname"]: b.get("extra_info", {}) for b in baseline}
    result = GateResult()
    for bench in current:
        name, info = bench["fullname"], bench.get("extra_info", {})
        if name not in base:
            result.missing.append(name)
            continue
        old = base[name]
        for key in TIME_KEYS:
            if info.get("path") == REFERENCE:
                continue  # the reference against itself: ~1 by construction, no information
            if old.get("process_ratios") and info.get("process_ratios"):
                j = noise.judge(old["process_ratios"], info["process_ratios"], time_tolerance)
                f = Finding(name, key, j.baseline, j.current, j.baseline * (1 + j.detectable), j.floor, j.processes)
                result.checked.append(f)
                if j.verdict == noise.REGRESSION:
                    result.regressions.append(f)
                elif j.verdict == noise.INCONCLUSIVE:
                    result.inconclusive.append(f)
            elif key in info and key in old and old[key]:
                f = Finding(name, key, float(old[key]), float(info[key]), float(old[key]) * (1 + time_tolerance))
                result.checked.append(f)
                if f.current > f.limit:
                    result.regressions.append(f)
        for key in MEMORY_KEYS:
            if key in info and key in old:
                limit = float(old[key]) * (1 + memory_tolerance) + memory_slack_mb
                f = Finding(name, key, float(old[key]), float(info[key]), limit)
                result.checked.append(f)
                if f.current > f.limit:
                    result.regressions.append(f)
    return result


__all__ = ["Finding", "GateResult", "MEMORY_KEYS", "TIME_KEYS", "gate"]
