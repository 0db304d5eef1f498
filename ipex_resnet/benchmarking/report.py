"""The report: ratios (to eager FP32, to the best peer at the same precision), the targets, and the
table. Pure functions over the report document that :mod:`.run` writes."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from ipex_resnet.benchmarking.fields import latency, throughput
from ipex_resnet.benchmarking.matrix import REFERENCE
from ipex_resnet.benchmarking.pipeline import format_costs, pipeline_targets
from ipex_resnet.benchmarking.scenario_report import scenario_lines, scenario_targets
from ipex_resnet.benchmarking.streams import lines as streams_lines

REPORT_SCHEMA = "ipex_resnet.bench/2"
MODES = ("interleaved", "alone")
# Targets: our paths against the peers, as ratios measured in one run.
BEST_PATH_LATENCY_MAX = 1.00  # our best path's b1 p50 / the best peer's, same precision
BEST_PATH_THROUGHPUT_MIN = 1.00  # our best path's largest-batch img/s / the best peer's
NATIVE_LATENCY_MAX = 1.10  # inductor/bf16 b1 p50 / openvino/bf16 (peer)
NATIVE_PAIR = ("inductor/bf16", "openvino/bf16 (peer)")


Key = Callable[[Mapping[str, Any]], "float | None"]  # a path's measured value (None: not measured)


def _latency_key(mode: str) -> Key:
    return lambda r: latency(r, mode)


def _throughput_key(mode: str, bs: int) -> Key:
    return lambda r: throughput(r, bs, mode)


def _best(paths: Mapping[str, dict], kind: str, precision: str, key: Key, lowest: bool) -> tuple[str, float] | None:
    """The (name, value) of the path of ``kind`` at ``precision`` with the lowest (highest) ``key``."""
    cands = [
        (v, n)
        for n, r in paths.items()
        if r["kind"] == kind and r["precision"] == precision and (v := key(r)) is not None
    ]
    if not cands:
        return None
    v, n = (min if lowest else max)(cands)
    return n, v


def add_ratios(paths: dict[str, dict], batch_sizes: list[int]) -> None:
    """``speedup``: throughput vs eager FP32 per batch size, and per mode the batch-1 latency and
    largest-batch throughput ratios to the best peer at the same precision."""
    ref = paths.get(REFERENCE)
    bmax = max(batch_sizes)
    for r in paths.values():
        sp: dict[str, dict[str, Any]] = {"vs_eager_fp32": {}}
        for bs in batch_sizes:
            base, mine = (throughput(ref, bs) if ref else None), throughput(r, bs)
            if base and mine:
                sp["vs_eager_fp32"][str(bs)] = mine / base
        for mode in MODES:
            sp[f"vs_best_peer_{mode}"] = _vs_best_peer(paths, r, mode, bmax)
        r["speedup"] = sp


def _vs_best_peer(paths: Mapping[str, dict], r: Mapping[str, Any], mode: str, bmax: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    peer, mine = _best(paths, "peer", r["precision"], _latency_key(mode), lowest=True), latency(r, mode)
    if peer and mine:
        row.update(latency_peer=peer[0], latency_b1=mine / peer[1])
    peer = _best(paths, "peer", r["precision"], _throughput_key(mode, bmax), lowest=False)
    mine = throughput(r, bmax, mode)
    if peer and mine:
        row.update(throughput_peer=peer[0], **{f"throughput_b{bmax}": mine / peer[1]})
    return row


def _peer_targets(paths: Mapping[str, dict], prec: str, mode: str, bmax: int) -> list[dict]:
    """Our best path against the best peer at ``prec``: b1 latency, and largest-batch throughput."""
    checks: list[tuple[str, Key, bool, str, float, str]] = [
        ("b1 latency", _latency_key(mode), True, "<=", BEST_PATH_LATENCY_MAX, "ms")
    ]
    if bmax > 1:
        checks.append(
            (f"b{bmax} throughput", _throughput_key(mode, bmax), False, ">=", BEST_PATH_THROUGHPUT_MIN, "img/s")
        )
    out = []
    for what, key, lowest, op, limit, unit in checks:
        ours, peer = _best(paths, "ipex_resnet", prec, key, lowest), _best(paths, "peer", prec, key, lowest)
        if ours and peer:
            out.append(_target(f"{prec} {what}, best path vs best peer", mode, *ours, *peer, op, limit, unit))
    return out


def _target(
    name: str,
    mode: str,
    ours: str,
    ours_v: float,
    other: str,
    other_v: float,
    op: str,
    limit: float,
    unit: str,
    ratio: float | None = None,
) -> dict:
    ratio = ours_v / other_v if ratio is None else ratio
    met = ratio <= limit if op == "<=" else ratio >= limit
    return {
        "name": name,
        "mode": mode,
        "ours": ours,
        "ours_value": ours_v,
        "peer": other,
        "peer_value": other_v,
        "unit": unit,
        "ratio": ratio,
        "target": f"{op} {limit:.2f}",
        "met": met,
    }


def targets(doc: Mapping) -> list[dict]:
    """Every target (peers, cold start, input pipeline) that this run measured, each with its value
    and whether it is met."""
    paths, out = doc["paths"], []
    bmax = max(doc["batch_sizes"])
    precisions = list(dict.fromkeys(r["precision"] for r in paths.values() if r["kind"] == "peer"))
    for mode in MODES:
        for prec in precisions:
            out += _peer_targets(paths, prec, mode, bmax)
        a, b = (paths.get(n) for n in NATIVE_PAIR)
        ours, peer = (latency(a, mode) if a else None), (latency(b, mode) if b else None)
        if ours and peer:
            name = "native stack: inductor/bf16 b1 latency vs openvino/bf16 peer"
            out.append(_target(name, mode, NATIVE_PAIR[0], ours, NATIVE_PAIR[1], peer, "<=", NATIVE_LATENCY_MAX, "ms"))
    out += _cold_start_targets(doc.get("cold_start") or {})
    return out + pipeline_targets(doc) + scenario_targets(doc.get("scenarios"))


def _cold_start_targets(cold: Mapping[str, Mapping]) -> list[dict]:
    """Per engine that started: its time to the first top-5, and its peak RSS where it has a target."""
    out: list[dict] = []
    for engine, c in cold.items():
        if "error" in c:
            continue
        out.append(
            {
                "name": f"cold start {engine} (process -> first top-5)",
                "mode": "fresh process",
                "ours": engine,
                "ours_value": c["to_first_top5_s"],
                "unit": "s",
                "target": f"<= {c['target_s']:.1f} s",
                "met": c["met_time"],
            }
        )
        if "target_rss_mb" in c:
            out.append(
                {
                    "name": f"cold start {engine} peak RSS (lean path)",
                    "mode": "fresh process",
                    "ours": engine,
                    "ours_value": c["peak_rss_mb"],
                    "unit": "MB",
                    "target": f"<= {c['target_rss_mb']:.0f} MB",
                    "met": c["met_rss"],
                }
            )
    return out


def describe_target(t: Mapping) -> str:
    """One line: the target, the measured value(s) and whether it is met."""
    if "peer" in t:
        value = (
            f"{t['ours']} {t['ours_value']:.1f} {t['unit']} vs {t['peer']} {t['peer_value']:.1f} {t['unit']} "
            f"= {t['ratio']:.2f}x"
        )
    else:
        value = f"{t['ours_value']:.{0 if t['unit'] == 'MB' else 2}f} {t['unit']}"
    extra = f"; {t['note']}" if t.get("note") else ""
    return f"{t['name']}: {value} (target {t['target']}): {'met' if t['met'] else 'NOT met'}{extra}"


def _f(v: float | None, nd: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _accuracy_cells(acc: Mapping | None) -> list[str]:
    if not acc:
        return ["-", "-", "-"]
    drop = acc.get("drop_pts")
    return [f"{acc['top1']:.1%}", f"{acc['top5']:.1%}", "-" if drop is None else f"{drop:+.1f}"]


def _path_head(bss: list[int], bmax: int, with_accuracy: bool) -> list[str]:
    """The path table's header: latency, throughput per batch size, alone, end to end, memory, ratios."""
    head = ["path", "p50 ms", "p90 ms", "p99 ms"] + [f"img/s b{b}" for b in bss]
    head += [
        "alone p50",
        f"alone b{bmax}",
        "e2e ms",
        "e2e 1080p",
        "load RSS MB",
        "infer RSS MB",
        "x eager",
        "lat x peer",
        "thr x peer",
        "alone lat x peer",
        "alone thr x peer",
    ]
    return head + (["top-1", "top-5", "drop pts"] if with_accuracy else [])


def _path_row(name: str, r: Mapping[str, Any], bss: list[int], bmax: int, with_accuracy: bool) -> list[str]:
    """One path's cells, in :func:`_path_head`'s order."""
    lat = r["latency"].get("1", {})
    e2e = r.get("end_to_end", {})
    sp = r.get("speedup", {})
    vi, va = sp.get("vs_best_peer_interleaved", {}), sp.get("vs_best_peer_alone", {})
    return [
        name,
        _f(lat.get("p50_ms")),
        _f(lat.get("p90_ms")),
        _f(lat.get("p99_ms")),
        *[_f(r["throughput"].get(str(b))) for b in bss],
        _f(latency(r, "alone")),
        _f(throughput(r, bmax, "alone")),
        _f(e2e.get("photo", {}).get("p50_ms")),
        _f(e2e.get("1920x1080", {}).get("p50_ms")),
        _f(r.get("load_delta_rss_mb"), 0),
        _f(r.get("infer_delta_rss_mb"), 0),
        _f(sp.get("vs_eager_fp32", {}).get(str(bmax)), 2),
        _f(vi.get("latency_b1"), 2),
        _f(vi.get(f"throughput_b{bmax}"), 2),
        _f(va.get("latency_b1"), 2),
        _f(va.get(f"throughput_b{bmax}"), 2),
    ] + (_accuracy_cells(r.get("accuracy")) if with_accuracy else [])


def _title(doc: Mapping) -> str:
    """The first line: the model, the CPU, the threads and the versions."""
    cpu = doc["cpu"]
    v = doc["versions"]
    return (
        f"{doc['model']} (crop {doc['inputs']['crop_size']}) on {cpu.get('model_name')} "
        f"({cpu.get('isa_level', '?')}), {doc['threads']['used']} threads, torch {v.get('torch')}"
        + (f", IPEX {v['intel_extension_for_pytorch']}" if v.get("intel_extension_for_pytorch") else "")
    )


def _path_lines(doc: Mapping) -> list[str]:
    """The table of paths and its legend."""
    bss = [b for b in doc["batch_sizes"] if b > 1]
    bmax = max(doc["batch_sizes"])
    with_accuracy = any("accuracy" in r for r in doc["paths"].values())
    rows = [_path_row(name, r, bss, bmax, with_accuracy) for name, r in doc["paths"].items()]
    return _grid(_path_head(bss, bmax, with_accuracy), rows) + [
        f"alone: the path by itself in a fresh process; x eager: img/s at b{bmax} vs eager/fp32; "
        f"x peer: vs the best peer at the same precision (lat: b1 p50 ratio, lower is better; "
        f"thr: b{bmax} img/s ratio, higher is better); RSS: MB added at peak (load; inference at b{bmax})"
    ]


def _cold_start_lines(cold: Mapping[str, Mapping]) -> list[str]:
    """The cold-start table: one row per engine (its error, or its times, peak RSS and targets)."""
    crow = []
    for engine, c in cold.items():
        if "error" in c:
            crow.append([engine, "-", "-", "-", "-", c["error"][:60]])
            continue
        target = f"<= {c['target_s']:.1f} s" + (f", <= {c['target_rss_mb']:.0f} MB" if "target_rss_mb" in c else "")
        met = c["met_time"] and c.get("met_rss", True)
        crow.append(
            [
                engine,
                _f(c["to_first_top5_s"], 2),
                _f(c["to_exit_s"], 2),
                _f(c["peak_rss_mb"], 0),
                target,
                "met" if met else "NOT met",
            ]
        )
    return _grid(["cold start (classify, warm cache)", "to top-5 s", "to exit s", "peak RSS MB", "target", ""], crow)


def _target_lines(doc: Mapping) -> list[str]:
    """One line per target, a note when no peer ran, and the paths skipped."""
    lines = [""] if doc.get("targets") else []
    lines += [f"target [{t['mode']}] {describe_target(t)}" for t in doc.get("targets", [])]
    if not any("(peer)" in str(t.get("peer")) for t in doc.get("targets", [])):
        lines.append("targets: no peer ran, so the speed targets could not be checked")
    return lines + [f"skipped {name}: {why}" for name, why in doc["skipped"].items()]


def format_table(doc: Mapping) -> str:
    """The report as text: the paths, cold start, the input pipeline, the scenarios and the targets."""
    lines = [_title(doc)] + _path_lines(doc)
    cold = doc.get("cold_start") or {}
    if cold:
        lines += [""] + _cold_start_lines(cold)
    if doc.get("input_pipeline"):
        lines += [""] + format_costs(doc["input_pipeline"]) + streams_lines(doc["input_pipeline"].get("streams"))
    if doc.get("scenarios"):
        lines += [""] + scenario_lines(doc["scenarios"])
    return "\n".join(lines + _target_lines(doc))


__all__ = [
    "MODES",
    "REPORT_SCHEMA",
    "add_ratios",
    "describe_target",
    "format_table",
    "latency",
    "targets",
    "throughput",
]
