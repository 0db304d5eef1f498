"""The service's own view of a served-scenario step: its ``/metrics`` histograms (queue wait, model
time per micro-batch, batch size) read before and after a LoadGen run, and the difference summarized,
so a report shows where a step's latency went."""

from __future__ import annotations

from collections.abc import Callable

from ipex_resnet.serve.metrics import PREFIX

HISTOGRAMS = {
    "queue_wait_seconds": ("queue_wait_ms", 1e3),
    "inference_seconds": ("inference_ms", 1e3),
    "batch_size": ("batch_size", 1.0),
}


def scrape(url: str) -> dict[str, dict]:
    """``{histogram: {"buckets": [(le, cumulative count)], "sum": s, "count": n}}`` from ``url``'s /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url.rstrip("/") + "/metrics", timeout=10).text
    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        name = family.name.removeprefix(PREFIX)
        if name not in HISTOGRAMS:
            continue
        h = out.setdefault(name, {"buckets": {}, "sum": 0.0, "count": 0.0})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                h["buckets"][le] = h["buckets"].get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                h["sum"] += sample.value
            elif sample.name.endswith("_count"):
                h["count"] += sample.value
    return out


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (a histogram knows no finer)."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    for le, cum in buckets:
        if cum >= q * total:
            return le
    return buckets[-1][0]


def difference(before: dict, after: dict) -> dict:
    """What happened between two scrapes: count, mean and p50 / p99 (bucket bounds) per histogram."""
    out: dict = {}
    for name, (key, scale) in HISTOGRAMS.items():
        a, b = after.get(name), before.get(name, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if a is None:
            continue
        n = a["count"] - b["count"]
        buckets = sorted((le, a["buckets"][le] - b["buckets"].get(le, 0.0)) for le in a["buckets"])
        row = {"count": int(n), "mean": round((a["sum"] - b["sum"]) / n * scale, 3) if n else None}
        for q, label in ((0.5, "p50_le"), (0.99, "p99_le")):
            v = _quantile(buckets, q)
            row[label] = None if v is None else (v * scale if v != float("inf") else "inf")
        out[key] = row
    return out


def observer(url: str) -> Callable[[], Callable[[], dict]]:
    """For :func:`~ipex_resnet.benchmarking.loadgen.server_search`: scrape now, and again when called back."""

    def before() -> Callable[[], dict]:
        first = scrape(url)
        return lambda: difference(first, scrape(url))

    return before


def line(observed: dict | None) -> str:
    """One step's histograms, for the text report."""
    if not observed:
        return ""
    parts = []
    for key, what in (("queue_wait_ms", "queue wait"), ("inference_ms", "model per batch"), ("batch_size", "batch")):
        r = observed.get(key)
        if r and r["count"]:
            unit = "" if key == "batch_size" else " ms"
            parts.append(f"{what} mean {r['mean']:g}{unit}, p99 <= {r['p99_le']}{unit}")
    return "; ".join(parts)


__all__ = ["difference", "line", "observer", "scrape"]
