"""``ipex-resnet compare REPORT.json...``: bench reports side by side, plus a PNG chart.

Each report is one column, labelled with its CPU model, ISA level, torch (and IPEX) version and
thread count. Reports that differ in any of those are never averaged or merged: the differences are
listed above the table, and two reports that share a label are numbered.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError

IDENTITY_FIELDS = ("cpu", "isa", "torch", "ipex", "threads", "model")


OLD_SCHEMAS = ("ipex_resnet.bench/1",)


def _upgrade(doc: dict) -> dict:
    """Schema 1 named peer rows like our paths ("openvino/fp32"); schema 2 marks them " (peer)"."""
    if doc.get("schema") in OLD_SCHEMAS:
        doc["paths"] = {(f"{n} (peer)" if r.get("kind") == "peer" else n): r for n, r in doc["paths"].items()}
    return doc


def load_report(path: str | Path) -> dict:
    from .report import REPORT_SCHEMA

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"report {str(p)!r} not found")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {str(p)!r} is not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") not in (REPORT_SCHEMA, *OLD_SCHEMAS) \
            or not isinstance(doc.get("paths"), dict):
        raise ConfigError(f"report {str(p)!r} is not an ipex-resnet bench report (schema {REPORT_SCHEMA}); "
                          "make one with: ipex-resnet bench --output FILE.json")
    doc["_file"] = str(p)
    return _upgrade(doc)


def identity(doc: dict) -> dict[str, str]:
    v = doc.get("versions", {})
    return {
        "cpu": str(doc.get("cpu", {}).get("model_name", "?")),
        "isa": str(doc.get("cpu", {}).get("isa_level", "?")),
        "torch": str(v.get("torch", "?")).split("+")[0],
        "ipex": str(v.get("intel_extension_for_pytorch") or "-").split("+")[0],
        "threads": str(doc.get("threads", {}).get("used", "?")),
        "model": str(doc.get("model", "?")),
    }


def labels(docs: Sequence[dict]) -> list[str]:
    """One label per report: CPU, ISA, torch/IPEX and threads; numbered when two are alike."""
    out = []
    for d in docs:
        i = identity(d)
        stack = f"torch {i['torch']}" + (f" + IPEX {i['ipex']}" if i["ipex"] != "-" else "")
        out.append(f"{i['cpu']} ({i['isa']}) | {stack} | {i['threads']} thr")
    seen: dict[str, int] = {}
    numbered = []
    for lab in out:
        if out.count(lab) > 1:
            seen[lab] = seen.get(lab, 0) + 1
            lab = f"{lab} #{seen[lab]}"
        numbered.append(lab)
    return numbered


def differences(docs: Sequence[dict]) -> dict[str, list[str]]:
    """Identity fields that are not the same in every report, with their values."""
    ids = [identity(d) for d in docs]
    return {f: [i[f] for i in ids] for f in IDENTITY_FIELDS if len({i[f] for i in ids}) > 1}


def common_batch(docs: Sequence[dict]) -> int:
    sizes = set.intersection(*(set(int(b) for b in d.get("batch_sizes", [1])) for d in docs))
    return max(sizes) if sizes else 1


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def table(docs: Sequence[dict]) -> str:
    labs = labels(docs)
    bmax = common_batch(docs)
    paths: list[str] = []
    for d in docs:
        paths += [p for p in d["paths"] if p not in paths]
    lines = []
    diffs = differences(docs)
    if diffs:
        lines.append("reports differ in: " + "; ".join(f"{k} ({' vs '.join(dict.fromkeys(v))})" for k, v in diffs.items())
                     + " -- each is its own column, nothing is averaged")
    for k, lab in enumerate(labs):
        lines.append(f"[{k + 1}] {lab}  ({docs[k]['_file']})")
    head = ["path"] + [f"[{k + 1}] p50 ms b1" for k in range(len(docs))] + \
           [f"[{k + 1}] img/s b{bmax}" for k in range(len(docs))]
    rows = []
    for p in paths:
        row = [p]
        row += [_fmt(d["paths"].get(p, {}).get("latency", {}).get("1", {}).get("p50_ms")) for d in docs]
        row += [_fmt(d["paths"].get(p, {}).get("throughput", {}).get(str(bmax))) for d in docs]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines += [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)


def chart(docs: Sequence[dict], out: str | Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the chart needs matplotlib: pip install matplotlib (or pip install 'ipex_resnet[bench]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = labels(docs)
    bmax = common_batch(docs)
    paths: list[str] = []
    for d in docs:
        paths += [p for p in d["paths"] if p not in paths]
    n = len(docs)
    width = 0.8 / n
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(paths) + 3), 9), constrained_layout=True)
    metrics = [("throughput", str(bmax), f"images/s at batch {bmax} (higher is better)"),
               ("latency", "1", "batch-1 latency p50, ms (lower is better)")]
    for ax, (kind, key, title) in zip(axes, metrics):
        for k, d in enumerate(docs):
            vals = []
            for p in paths:
                r = d["paths"].get(p, {})
                v = r.get("throughput", {}).get(key) if kind == "throughput" else r.get("latency", {}).get(key, {}).get("p50_ms")
                vals.append(v if v is not None else 0.0)
            xs = [i + (k - (n - 1) / 2) * width for i in range(len(paths))]
            ax.bar(xs, vals, width, label=f"[{k + 1}] {labs[k]}")
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels(paths, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside lower center", ncols=1)
    models = sorted({d.get("model", "?") for d in docs})
    fig.suptitle(f"ipex-resnet bench: {', '.join(models)}")
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("reports", nargs="+", help="JSON reports written by ipex-resnet bench")
    p.add_argument("--output", "-o", default="bench-compare.png", help="PNG chart path (default: bench-compare.png)")
    p.add_argument("--no-chart", action="store_true", help="print the table only")


def main(args: argparse.Namespace) -> int:
    try:
        docs = [load_report(r) for r in args.reports]
        if not args.no_chart:
            out_dir = Path(args.output).resolve().parent
            if not out_dir.is_dir():
                raise ConfigError(f"--output directory {str(out_dir)!r} does not exist")
        print(table(docs))
        if not args.no_chart:
            print(f"chart: {chart(docs, args.output)}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["add_arguments", "chart", "differences", "identity", "labels", "load_report", "main", "table"]
