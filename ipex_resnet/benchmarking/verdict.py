"""The gate over ``ipex-resnet bench`` reports: a report's measurements as the gate's entries (the same
pytest-benchmark-shaped dicts :func:`ipex_resnet.benchmarking.gate.gate` judges in bench/), and the
verdicts as text lines (stdout) and a Markdown table (a PR comment, ``$GITHUB_STEP_SUMMARY``).

Entries: ``"<path> b<N>"`` carries ``ratio_to_ref``, the path's ratio to the eager FP32 reference at batch
N from the report's ``gate`` section (:mod:`.gate_timing`: paired calls in fresh single-threaded
processes, the median of each process's fastest path call over its fastest reference call), each
process's ratio (``process_ratios``) and their spread (``noise``, :mod:`.noise`); ``"<path> memory"``
carries the peak-RSS deltas (load, inference) and the engine's cold-start peak RSS where it was measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ipex_resnet.benchmarking.gate import Finding, GateResult
from ipex_resnet.benchmarking.matrix import REFERENCE
from ipex_resnet.benchmarking.noise import INCONCLUSIVE, log_spread, self_floor

METRIC_NAMES = {
    "ratio_to_ref": f"time / {REFERENCE} (fastest calls, 1 thread)",
    "load_delta_rss_mb": "load RSS MB",
    "infer_delta_rss_mb": "inference RSS MB",
    "cold_peak_rss_mb": "cold start peak RSS MB",
}


def entries(doc: Mapping) -> list[dict]:
    """The gate's entries for every path of a report (see the module docstring); a report measured
    without ``--gate``/``--save-baseline`` has no ``gate`` section and so memory entries only."""
    section = doc.get("gate") or {}
    ratios = section.get("ratios") or {}
    per_process = section.get("process_ratios") or {}
    cold = doc.get("cold_start") or {}
    out: list[dict] = []
    for name, r in doc["paths"].items():
        for bs, ratio in sorted(ratios.get(name, {}).items(), key=lambda kv: int(kv[0])):
            info = {"path": name, "batch_size": int(bs), "ratio_to_ref": float(ratio)}
            if per_process.get(name, {}).get(bs):
                info["process_ratios"] = [float(v) for v in per_process[name][bs]]
                info["noise"] = log_spread(info["process_ratios"])
            out.append({"fullname": f"{name} b{bs}", "extra_info": info})
        mem = {k: float(r[k]) for k in ("load_delta_rss_mb", "infer_delta_rss_mb") if r.get(k) is not None}
        c = cold.get(r.get("backend")) or {}
        if r.get("kind") != "peer" and "error" not in c and c.get("peak_rss_mb") is not None:
            mem["cold_peak_rss_mb"] = float(c["peak_rss_mb"])
        if mem:
            out.append({"fullname": f"{name} memory", "extra_info": {"path": name, **mem}})
    return out


def _path_of(fullname: str) -> str:
    return fullname.rsplit(" ", 1)[0]


def verdicts(result: GateResult, current: Sequence[Mapping], baseline: Sequence[Mapping]) -> dict[str, str]:
    """Per path: PASS, REGRESSION, INCONCLUSIVE, new (not in the baseline), or gone (in the baseline only)."""
    paths = list(dict.fromkeys(b["extra_info"]["path"] for b in current))
    bad = {_path_of(f.name) for f in result.regressions}
    unsure = {_path_of(f.name) for f in result.inconclusive}
    new = {_path_of(n) for n in result.missing}
    checked = {_path_of(f.name) for f in result.checked}
    out = {}
    for p in paths:
        out[p] = (
            "REGRESSION"
            if p in bad
            else INCONCLUSIVE
            if p in unsure
            else "PASS"
            if p in checked
            else "new (not in baseline)"
            if p in new
            else "PASS"
        )
    for b in baseline:
        out.setdefault(b["extra_info"].get("path", _path_of(b["fullname"])), "gone (in baseline only)")
    return out


def method_text(method: Mapping | None) -> str:
    """How the time ratios were measured, in words (from a report's ``gate`` section or a baseline's method)."""
    m = method or {}
    return (
        f"ratio to the {REFERENCE} reference (fastest call over fastest call in each of {m.get('processes', '?')}+ "
        f"fresh {m.get('threads', 1)}-thread processes, >= {m.get('rounds', '?')} paired rounds each; their median)"
    )


def lines(
    result: GateResult, verdict: Mapping[str, str], baseline: Mapping, tolerances: tuple[float, float, float]
) -> list[str]:
    """The gate's verdicts as text: a header, one line per path, each regression, the overall verdict."""
    tt, mt, slack = tolerances
    out = [
        f"gate vs baseline {baseline.get('name')!r} ({baseline.get('_file')}; machine key "
        f"{baseline.get('machine_key')}): {len(result.checked)} checks; time: "
        f"{method_text(baseline.get('gate_method'))} +{tt * 100:g}%; memory: peak RSS +{mt:.0%} +{slack:g} MB"
    ]
    for path, v in verdict.items():
        n = sum(1 for f in result.checked if _path_of(f.name) == path)
        note = " (the reference: memory only)" if path == REFERENCE else ""
        out.append(f"  {path}: {v}" + (f" ({n} checks){note}" if v in ("PASS", "REGRESSION", INCONCLUSIVE) else ""))
        out += [f"    {time_check(f, tt)}" for f in result.checked if _path_of(f.name) == path and f.floor is not None]
    out += [f"  REGRESSION {f.describe()}" for f in result.regressions]
    out += [f"  {INCONCLUSIVE} {f.describe()}" for f in result.inconclusive]
    if result.inconclusive and not result.regressions:
        out.append(f"  {INCONCLUSIVE}: {inconclusive_advice(result.inconclusive, tt)}")
    out.append(f"gate: {headline(result)}")
    return out


def headline(result: GateResult) -> str:
    if result.regressions:
        return f"FAIL ({len(result.regressions)} regression(s))"
    if result.inconclusive:
        return f"{INCONCLUSIVE} ({len(result.inconclusive)} change(s) within the noise; exit 4)"
    return "PASS"


def time_check(f: Finding, tolerance: float) -> str:
    """One time check in words, with the smallest slowdown it could have detected."""
    kb, kc = f.processes or ("?", "?")
    return (
        f"{f.name.rsplit(' ', 1)[-1]}: {f.change:+.1%} (median of {kc} processes vs {kb}); noise floor "
        f"{f.floor or 0:.1%}; smallest slowdown it could detect: {max(tolerance, f.floor or 0):.1%}"
    )


def inconclusive_advice(found: Sequence[Finding], tolerance: float) -> str:
    """What an inconclusive run measured and what would let the gate judge the asked tolerance."""
    worst = max(found, key=lambda f: f.floor or 0)
    return (
        f"{len(found)} check(s) could not be judged at the {tolerance:.1%} tolerance: their noise floor (up to "
        f"{worst.floor or 0:.1%}, on {worst.name}) is above it and their change does not clear it, even after "
        "taking more processes within --gate-budget. To judge it: a larger --gate-budget (more processes) or "
        "--gate-processes (for the baseline too), "
        "a larger batch (--batch-sizes), a quieter or pinned machine (taskset, no neighbours), or a tolerance "
        f"at or above the floor (--time-tolerance {math.ceil((worst.floor or 0) * 100) / 100:.2f})"
    )


def baseline_noise(entries_: Sequence[Mapping], tolerance: float) -> list[str]:
    """Saving a baseline: its checks whose own noise floor stays above the tolerance (gates against it
    will be inconclusive for smaller changes)."""
    out = []
    for e in entries_:
        ratios = e.get("extra_info", {}).get("process_ratios")
        if ratios and (f := self_floor(ratios)) > tolerance:
            out.append(
                f"  note: {e['fullname']}: noise floor {f:.1%} with {len(ratios)} processes, above the "
                f"{tolerance:.1%} tolerance: a gate against this baseline detects slowdowns of {f:.1%} or "
                "more there and calls smaller ones inconclusive"
            )
    return out


def _row(f: Finding, state: str) -> str:
    ratio = f"{f.current / f.baseline:.2f}x" if f.baseline else "-"
    floor = f"{f.floor:.1%}" if f.floor is not None else "-"
    word = {
        "REGRESSION": f"**REGRESSION** (limit {f.limit:.4g})",
        INCONCLUSIVE: f"**{INCONCLUSIVE}** (within the noise)",
    }.get(state, "ok")
    return (
        f"| {f.name} | {METRIC_NAMES.get(f.metric, f.metric)} | {f.baseline:.4g} | {f.current:.4g} | {ratio} | "
        f"{floor} | {word} |"
    )


def markdown(result: GateResult, verdict: Mapping[str, str], baseline: Mapping, report: Mapping) -> str:
    """The verdicts as a Markdown table: path, metric, baseline, now, ratio (now / baseline), verdict."""
    out = [
        f"### ipex-resnet gate: {headline(result)} vs baseline `{baseline.get('name')}`",
        "",
        f"Model `{report.get('model')}`, machine key `{report.get('machine_key')}`; time is each path's "
        f"{method_text(report.get('gate'))}, memory its peak RSS; a time change within its noise floor is "
        "inconclusive, not a regression.",
        "",
        "| path | metric | baseline | now | ratio | noise floor | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    state = {id(f): "REGRESSION" for f in result.regressions} | {id(f): INCONCLUSIVE for f in result.inconclusive}
    ordered = sorted(result.checked, key=lambda f: (id(f) not in state, f.name))
    out += [_row(f, state.get(id(f), "ok")) for f in ordered]
    out += [
        f"| {p} | - | - | - | - | - | {v} |"
        for p, v in verdict.items()
        if v not in ("PASS", "REGRESSION", INCONCLUSIVE)
    ]
    return "\n".join(out) + "\n"


__all__ = [
    "METRIC_NAMES",
    "baseline_noise",
    "entries",
    "headline",
    "inconclusive_advice",
    "lines",
    "markdown",
    "method_text",
    "time_check",
    "verdicts",
]
