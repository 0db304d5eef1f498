"""The baseline gate: pure functions over pytest-benchmark results (their ``extra_info``).

Time is judged as each path's ratio to the eager FP32 reference measured interleaved in the same
run (raw seconds drift by tens of percent on a shared machine; the ratio does not); memory as peak
RSS growth. Thresholds and their measured catch / false-alarm rates: docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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

    @property
    def change(self) -> float:
        return self.current / self.baseline - 1 if self.baseline else math.inf

    def describe(self) -> str:
        return (f"{self.name}: {self.metric} {self.current:.4g} vs baseline {self.baseline:.4g} "
                f"({self.change:+.1%}, limit {self.limit:.4g})")


@dataclass
class GateResult:
    regressions: list[Finding] = field(default_factory=list)
    checked: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.regressions


def gate(current: Iterable[Mapping], baseline: Iterable[Mapping], *, time_tolerance: float = TIME_TOLERANCE,
         memory_tolerance: float = MEMORY_TOLERANCE, memory_slack_mb: float = MEMORY_SLACK_MB) -> GateResult:
    """Compare benchmarks (pytest-benchmark dicts, with ``extra_info``) against a baseline.

    Time: ``extra_info["ratio_to_ref"]`` may grow by ``time_tolerance``. Memory: each ``MEMORY_KEYS``
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
            if key in info and key in old and old[key]:
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
