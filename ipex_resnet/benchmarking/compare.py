"""``ipex-resnet compare REPORT.json...``: bench reports side by side, plus a PNG chart.

Each report is one column, labelled with its CPU model, ISA level, torch (and IPEX) version and
thread count. Reports that differ in any of those are never averaged or merged: the differences are
listed above the table, and two reports that share a label are numbered. A report made with
``bench --price-per-hour USD`` also gets its cost per million images: its best path (ours, not a peer)
at its Offline rate (img/s at batch 32, else its largest batch), USD/hour / (img/s * 3600) * 1e6.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from ipex_resnet.errors import ConfigError

IDENTITY_FIELDS = ("cpu", "isa", "torch", "ipex", "threads", "model")


OLD_SCHEMAS = ("ipex_resnet.bench/1",)


def _upgrade(doc: dict) -> dict:
    """Schema 1 named peer rows like our paths ("openvino/fp32"); schema 2 marks them " (peer)"."""
    if doc.get("schema") in OLD_SCHEMAS:
        doc["paths"] = {(f"{n} (peer)" if r.get("kind") == "peer" else n): r for n, r in doc["paths"].items()}
    return doc


def load_report(path: str | Path) -> dict:
    from ipex_resnet.benchmarking.report import REPORT_SCHEMA

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"report {str(p)!r} not found")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"report {str(p)!r} is not JSON ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("schema") not in (REPORT_SCHEMA, *OLD_SCHEMAS)
        or not isinstance(doc.get("paths"), dict)
    ):
        raise ConfigError(
            f"report {str(p)!r} is not an ipex-resnet bench report (schema {REPORT_SCHEMA}); "
            "make one with: ipex-resnet bench --output FILE.json"
        )
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
    sizes = set.intersection(*({int(b) for b in d.get("batch_sizes", [1])} for d in docs))
    return max(sizes) if sizes else 1


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


OFFLINE_BATCH = 32


def offline_batch(doc: dict) -> int:
    """The Offline (throughput) batch of a report: 32 where it was measured, else its largest."""
    sizes = [int(b) for b in doc.get("batch_sizes", [1])] or [1]
    return OFFLINE_BATCH if OFFLINE_BATCH in sizes else max(sizes)


def cost_per_million(price_per_hour: float, img_per_s: float) -> float:
    """USD per million images at ``img_per_s`` on a machine costing ``price_per_hour`` USD."""
    return price_per_hour / (img_per_s * 3600) * 1e6


def best_offline(doc: dict) -> dict:
    """The report's best path (ours, not a peer) at its Offline rate, its price and cost per million
    images (``cost`` None when the report has no price)."""
    bs = offline_batch(doc)
    rates = [
        (float(r["throughput"][str(bs)]), n)
        for n, r in doc["paths"].items()
        if r.get("kind") != "peer" and r.get("throughput", {}).get(str(bs))
    ]
    rate, path = max(rates) if rates else (None, None)
    price = doc.get("price_per_hour_usd")
    cost = cost_per_million(float(price), rate) if price and rate else None
    return {
        "path": path,
        "batch": bs,
        "img_per_s": rate,
        "price_per_hour": price,
        "cost_per_million": cost,
        **served(doc),
    }


def served(doc: dict) -> dict:
    """The report's served capacity (LoadGen Server against the HTTP service, MLPerf-style) and its
    cost per million images; None where the report has no such run (or no price)."""
    sc = doc.get("scenarios") or {}
    qps = (sc.get("service") or {}).get("capacity_qps") or None
    price = doc.get("price_per_hour_usd")
    return {
        "served_path": sc.get("path") if qps else None,
        "served_qps": qps,
        "served_p99_ms": sc.get("p99_ms_bound"),
        "served_cost_per_million": cost_per_million(float(price), qps) if price and qps else None,
    }


def cost_lines(docs: Sequence[dict]) -> list[str]:
    """Per report: the best path, its Offline rate, the price and the cost per million images."""
    head = [
        "report",
        "best path (Offline)",
        "img/s",
        "USD/hour",
        "USD per 1M images",
        "served QPS (path, p99)",
        "USD per 1M served",
    ]
    rows = []
    for k, d in enumerate(docs):
        b = best_offline(d)
        no_price = "no price" if not b["price_per_hour"] else "-"
        rows.append(
            [
                f"[{k + 1}]",
                f"{b['path'] or '-'}" + (f" b{b['batch']}" if b["path"] else ""),
                _fmt(b["img_per_s"]),
                f"{b['price_per_hour']:g}" if b["price_per_hour"] else "no price",
                f"{b['cost_per_million']:.3f}" if b["cost_per_million"] is not None else no_price,
                f"{_fmt(b['served_qps'])} ({b['served_path']}, <= {b['served_p99_ms']:g} ms)"
                if b["served_qps"]
                else "not measured",
                f"{b['served_cost_per_million']:.3f}"
                if b["served_cost_per_million"] is not None
                else (no_price if b["served_qps"] else "-"),
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def table(docs: Sequence[dict]) -> str:
    labs = labels(docs)
    bmax = common_batch(docs)
    paths: list[str] = []
    for d in docs:
        paths += [p for p in d["paths"] if p not in paths]
    lines = []
    diffs = differences(docs)
    if diffs:
        lines.append(
            "reports differ in: "
            + "; ".join(f"{k} ({' vs '.join(dict.fromkeys(v))})" for k, v in diffs.items())
            + " -- each is its own column, nothing is averaged"
        )
    for k, lab in enumerate(labs):
        lines.append(f"[{k + 1}] {lab}  ({docs[k]['_file']})")
    head = (
        ["path"]
        + [f"[{k + 1}] p50 ms b1" for k in range(len(docs))]
        + [f"[{k + 1}] img/s b{bmax}" for k in range(len(docs))]
    )
    rows = []
    for p in paths:
        row = [p]
        row += [_fmt(d["paths"].get(p, {}).get("latency", {}).get("1", {}).get("p50_ms")) for d in docs]
        row += [_fmt(d["paths"].get(p, {}).get("throughput", {}).get(str(bmax))) for d in docs]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    lines += [fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    lines += [
        "",
        "cost: the best of our paths at its Offline rate (img/s at batch 32, else the largest batch), and at "
        "the served capacity (bench --scenarios service: the HTTP service's highest Poisson rate whose p99 stays "
        "under the bound; MLPerf-style, not an official MLPerf result); "
        "USD per 1M images = USD/hour / (img/s * 3600) * 1e6",
    ] + cost_lines(docs)
    return "\n".join(lines)


def chart(docs: Sequence[dict], out: str | Path) -> Path:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(
            "the chart needs matplotlib: pip install matplotlib (or pip install 'ipex_resnet[bench]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = labels(docs)
    bmax = common_batch(docs)
    paths: list[str] = []
    for d in docs:
        paths += [p for p in d["paths"] if p not in paths]
    n = len(docs)
    width = 0.8 / n
    fig, axes = plt.subplots(
        3, 1, figsize=(max(8, 1.1 * len(paths) + 3), 13), constrained_layout=True, height_ratios=(3, 3, 2)
    )
    metrics = [
        ("throughput", str(bmax), f"images/s at batch {bmax} (higher is better)"),
        ("latency", "1", "batch-1 latency p50, ms (lower is better)"),
    ]
    for ax, (kind, key, title) in zip(axes[:2], metrics):
        for k, d in enumerate(docs):
            vals = []
            for p in paths:
                r = d["paths"].get(p, {})
                v = (
                    r.get("throughput", {}).get(key)
                    if kind == "throughput"
                    else r.get("latency", {}).get(key, {}).get("p50_ms")
                )
                vals.append(v if v is not None else 0.0)
            xs = [i + (k - (n - 1) / 2) * width for i in range(len(paths))]
            ax.bar(xs, vals, width, label=f"[{k + 1}] {labs[k]}")
        ax.set_xticks(range(len(paths)))
        ax.set_xticklabels(paths, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    _cost_panel(axes[2], docs)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside lower center", ncols=1)
    models = sorted({d.get("model", "?") for d in docs})
    fig.suptitle(f"ipex-resnet bench: {', '.join(models)}")
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cost_panel(ax, docs: Sequence[dict]) -> None:
    """One bar per report: USD per million images of its best path at its Offline rate ("no price" when
    the report has none)."""
    costs = [best_offline(d) for d in docs]
    xs = range(len(docs))
    for offset, key, what in ((-0.2, "cost_per_million", "Offline"), (0.2, "served_cost_per_million", "served")):
        ax.bar(
            [k + offset for k in xs],
            [c[key] or 0.0 for c in costs],
            0.38,
            color=[f"C{k}" for k in xs],
            alpha=1.0 if what == "Offline" else 0.55,
        )
        for k, c in enumerate(costs):
            if c[key] is not None:
                text = f"{c[key]:.3f} USD\n{what}: " + (
                    f"{c['path']} b{c['batch']}" if what == "Offline" else f"{c['served_qps']:.0f} QPS"
                )
            else:
                text = "no price" if not c["price_per_hour"] else f"{what}: not measured"
            ax.annotate(text, (k + offset, c[key] or 0.0), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"[{k + 1}]" for k in xs])
    ax.set_title(
        "USD per million images (lower is better): best path at its Offline rate (solid), and the HTTP "
        "service at its served capacity (light; MLPerf-style)"
    )
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.25)


__all__ = [
    "best_offline",
    "chart",
    "cost_lines",
    "cost_per_million",
    "offline_batch",
    "served",
    "differences",
    "identity",
    "labels",
    "load_report",
    "table",
]
