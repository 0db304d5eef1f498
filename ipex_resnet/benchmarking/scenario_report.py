"""The LoadGen scenarios in a report: their targets (each measured ratio against its minimum) and their
section of the text report. Running them is :mod:`.scenarios`' concern."""

from __future__ import annotations

from ipex_resnet.benchmarking import loadgen as L
from ipex_resnet.benchmarking import service_metrics

# Targets (docs/benchmarks.md): LoadGen's Offline agrees with the report's own largest-batch throughput;
# the service keeps most of it when it also decodes and answers HTTP; and beats a peer stack on the same engine.
OFFLINE_CONSISTENCY = 0.05
SERVED_VS_OFFLINE_MIN = 0.50
SERVED_VS_DECODE_MIN = 0.80
SERVED_VS_PEER_MIN = 1.5
ON_RAY_VS_SERVICE_MIN = 0.7  # what the distributed layer may cost on one box


# (field, target name, minimum) of the served-capacity ratios, in the report's order
_RATIO_TARGETS = (
    ("served_vs_offline", "served capacity (p99 <= {bound:g} ms) / Offline", SERVED_VS_OFFLINE_MIN),
    ("served_vs_server_decode", "served capacity / in-process Server decoding the same JPEGs", SERVED_VS_DECODE_MIN),
    ("served_vs_peer", "served capacity / LitServe's, same engine", SERVED_VS_PEER_MIN),
    ("served_vs_ray_serve", "served capacity / Ray Serve's, same engine", SERVED_VS_PEER_MIN),
    ("ray_service_vs_service", "served capacity on Ray Serve / the service's (one box)", ON_RAY_VS_SERVICE_MIN),
)


def _scenario_target(sc: dict, name: str, value: float, op: str, limit: float, met: bool) -> dict:
    return {
        "name": f"{name} [{L.LABEL}]",
        "mode": "loadgen",
        "ours": sc["path"],
        "ours_value": value,
        "unit": "x",
        "target": f"{op} {limit:.2f}",
        "met": met,
    }


def scenario_targets(sc: dict | None) -> list[dict]:
    """The scenarios' targets that this run measured, each with its value and whether it is met."""
    if not sc or "error" in sc:
        return []
    out = []
    ratio = (sc.get("offline") or {}).get("vs_report_throughput")
    if ratio is not None:
        out.append(
            _scenario_target(
                sc,
                f"Offline img/s / the report's b{sc['max_batch']} img/s",
                ratio,
                "within +-",
                OFFLINE_CONSISTENCY,
                abs(ratio - 1) <= OFFLINE_CONSISTENCY,
            )
        )
    for key, name, limit in _RATIO_TARGETS:
        if key in sc:
            name = name.format(bound=sc["p99_ms_bound"])
            out.append(_scenario_target(sc, name, sc[key], ">=", limit, sc[key] >= limit))
    return out


# (field, line) of the Server runs and of the ratios, in the report's order
_SERVER_LINES = (
    ("server", "Server, in process"),
    ("server_decode", "Server, in process, decoding the JPEGs"),
    ("service", "Server, HTTP service (served capacity)"),
    ("peer", "Server, LitServe with the same engine"),
    ("ray_serve", "Server, Ray Serve with the same engine"),
    ("ray_service", "Server, our service on Ray Serve"),
)
_RATIO_LINES = (
    ("served_vs_offline", "served capacity / Offline"),
    ("served_vs_server_decode", "served capacity / in-process Server with decode"),
    ("served_vs_peer", "served capacity / LitServe"),
    ("served_vs_ray_serve", "served capacity / Ray Serve"),
    ("ray_service_vs_service", "our service on Ray Serve / the service"),
    ("ray_service_vs_ray_serve", "our service on Ray Serve / Ray Serve with @serve.batch"),
)
_RATIO_NOTES = {"ray_service_vs_ray_serve": " (our batcher vs Ray's, same engine)"}


def _num(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _server_lines(what: str, r: dict, bound: float) -> list[str]:
    """One Server search: its capacity, where it failed, and what the service observed at each rate."""
    if "error" in r:
        return [f"  {what}: failed: {r['error']}"]
    at = r.get("at_capacity") or {}
    lo, hi = r.get("bracket") or (r["capacity_qps"], None)
    lines = [
        f"  {what}: {_num(r['capacity_qps'])} QPS with p99 <= {bound:g} ms "
        f"(p99 there {_num(at.get('p99_ms'))} ms; "
        f"{'fails at ' + _num(hi) + ' QPS' if hi is not None else 'no failing rate found'}, "
        f"{len(r.get('tried', []))} runs)"
    ]
    for t in r.get("tried", []):
        if t.get("observed"):
            lines.append(
                f"      at {_num(t['target_qps'])} QPS (p99 {_num(t.get('p99_ms'))} ms): "
                f"{service_metrics.line(t['observed'])}"
            )
    return lines


def scenario_lines(sc: dict) -> list[str]:
    """The scenarios' section of the text report."""
    if "error" in sc:
        return [f"{L.LABEL}: the scenarios failed: {sc['error']} (logs in {sc.get('logs')})"]
    lines = [
        f"{sc['label']} (MLCommons LoadGen; path {sc['path']}, {sc['samples']} real JPEGs, "
        f"{sc['duration_s']:g} s per run, logs in {sc['logs']})"
    ]
    if "single_stream" in sc:
        r = sc["single_stream"]
        lines.append(
            f"  SingleStream: p90 {_num(r['p90_ms'], 2)} ms, p50 {_num(r['p50_ms'], 2)} ms"
            + ("" if r["valid"] else " (LoadGen: INVALID)")
        )
    if "offline" in sc:
        r = sc["offline"]
        lines.append(
            f"  Offline: {_num(r['samples_per_s'])} img/s (batches of {sc['max_batch']}; "
            f"{r['vs_report_throughput']:.2f}x the report's b{sc['max_batch']} throughput)"
        )
    for key, what in _SERVER_LINES:
        if key in sc:
            lines += _server_lines(what, sc[key], sc["p99_ms_bound"])
    lines += [f"  {what}: {sc[key]:.2f}x{_RATIO_NOTES.get(key, '')}" for key, what in _RATIO_LINES if key in sc]
    return lines


__all__ = [
    "OFFLINE_CONSISTENCY",
    "ON_RAY_VS_SERVICE_MIN",
    "SERVED_VS_DECODE_MIN",
    "SERVED_VS_OFFLINE_MIN",
    "SERVED_VS_PEER_MIN",
    "scenario_lines",
    "scenario_targets",
]
