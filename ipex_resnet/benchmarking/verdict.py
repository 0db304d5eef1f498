"""The gate over ``ipex-resnet bench`` reports: a report's measurements as the gate's entries (the same
pytest-benchmark-shaped dicts :func:`ipex_resnet.benchmarking.gate.gate` judges in bench/), and the
verdicts as text lines (stdout) and a Markdown table (a PR comment, ``$GITHUB_STEP_SUMMARY``).

Entries: ``"<path> b<N>"`` carries ``ratio_to_ref``, the path's ratio to the eager FP32 reference at batch
N from the report's ``gate`` section (:mod:`.gate_timing`: paired calls in fresh single-threaded
processes, the fastest path call of all over the fastest reference call of all); ``"<path> memory"``
carries the peak-RSS deltas (load, inference) and the engine's cold-start peak RSS where it was measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ipex_resnet.benchmarking.gate import Finding, GateResult
from ipex_resnet.benchmarking.matrix import REFERENCE

METRIC_NAMES = {"ratio_to_ref": f"time / {REFERENCE} (fastest calls, 1 thread)", "load_delta_rss_mb": "load RSS MB",
                "infer_delta_rss_mb": "inference RSS MB", "cold_peak_rss_mb": "cold start peak RSS MB"}


def entries(doc: Mapping) -> list[dict]:
    """The gate's entries for every path of a report (see the module docstring); a report measured
    without ``--gate``/``--save-baseline`` has no ``gate`` section and so memory entries only."""
    ratios = (doc.get("gate") or {}).get("ratios") or {}
    cold = doc.get("cold_start") or {}
    out: list[dict] = []
    for name, r in doc["paths"].items():
        for bs, ratio in sorted(ratios.get(name, {}).items(), key=lambda kv: int(kv[0])):
            out.append({"fullname": f"{name} b{bs}",
                        "extra_info": {"path": name, "batch_size": int(bs), "ratio_to_ref": float(ratio)}})
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
    """Per path: PASS, REGRESSION, new (not in the baseline), or gone (in the baseline only)."""
    paths = list(dict.fromkeys(b["extra_info"]["path"] for b in current))
    bad = {_path_of(f.name) for f in result.regressions}
    new = {_path_of(n) for n in result.missing}
    checked = {_path_of(f.name) for f in result.checked}
    out = {}
    for p in paths:
        out[p] = "REGRESSION" if p in bad else "PASS" if p in checked else "new (not in baseline)" if p in new else "PASS"
    for b in baseline:
        out.setdefault(b["extra_info"].get("path", _path_of(b["fullname"])), "gone (in baseline only)")
    return out


def method_text(method: Mapping | None) -> str:
    """How the time ratios were measured, in words (from a report's ``gate`` section or a baseline's method)."""
    m = method or {}
    return (f"ratio to the {REFERENCE} reference (fastest call over fastest call, {m.get('rounds', '?')} paired "
            f"rounds in each of {m.get('processes', '?')} fresh {m.get('threads', 1)}-thread processes)")


def lines(result: GateResult, verdict: Mapping[str, str], baseline: Mapping, tolerances: tuple[float, float, float]) -> list[str]:
    """The gate's verdicts as text: a header, one line per path, each regression, the overall verdict."""
    tt, mt, slack = tolerances
    out = [f"gate vs baseline {baseline.get('name')!r} ({baseline.get('_file')}; machine key "
           f"{baseline.get('machine_key')}): {len(result.checked)} checks; time: "
           f"{method_text(baseline.get('gate_method'))} +{tt * 100:g}%; memory: peak RSS +{mt:.0%} +{slack:g} MB"]
    for path, v in verdict.items():
        n = sum(1 for f in result.checked if _path_of(f.name) == path)
        note = " (the reference: memory only)" if path == REFERENCE else ""
        out.append(f"  {path}: {v}" + (f" ({n} checks){note}" if v in ("PASS", "REGRESSION") else ""))
    out += [f"  REGRESSION {f.describe()}" for f in result.regressions]
    out.append("gate: PASS" if result.ok else f"gate: FAIL ({len(result.regressions)} regression(s))")
    return out


def _row(f: Finding, bad: bool) -> str:
    ratio = f"{f.current / f.baseline:.2f}x" if f.baseline else "-"
    return (f"| {f.name} | {METRIC_NAMES.get(f.metric, f.metric)} | {f.baseline:.4g} | {f.current:.4g} | {ratio} | "
            f"{'**REGRESSION** (limit ' + format(f.limit, '.4g') + ')' if bad else 'ok'} |")


def markdown(result: GateResult, verdict: Mapping[str, str], baseline: Mapping, report: Mapping) -> str:
    """The verdicts as a Markdown table: path, metric, baseline, now, ratio (now / baseline), verdict."""
    head = "PASS" if result.ok else f"FAIL ({len(result.regressions)} regression(s))"
    out = [f"### ipex-resnet gate: {head} vs baseline `{baseline.get('name')}`", "",
           f"Model `{report.get('model')}`, machine key `{report.get('machine_key')}`; time is each path's "
           f"{method_text(report.get('gate'))}, memory its peak RSS.", "",
           "| path | metric | baseline | now | ratio | verdict |", "|---|---|---:|---:|---:|---|"]
    bad = {id(f) for f in result.regressions}
    ordered = sorted(result.checked, key=lambda f: (id(f) not in bad, f.name))
    out += [_row(f, id(f) in bad) for f in ordered]
    out += [f"| {p} | - | - | - | - | {v} |" for p, v in verdict.items() if v not in ("PASS", "REGRESSION")]
    return "\n".join(out) + "\n"


__all__ = ["METRIC_NAMES", "entries", "lines", "markdown", "method_text", "verdicts"]
