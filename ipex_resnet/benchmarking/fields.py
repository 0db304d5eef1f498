"""Reading a report document: a path's latency and throughput, interleaved or measured alone."""

from __future__ import annotations

from collections.abc import Mapping


def latency(r: Mapping, mode: str = "interleaved", bs: int = 1) -> float | None:
    src = r if mode == "interleaved" else r.get("alone") or {}
    return (src.get("latency") or {}).get(str(bs), {}).get("p50_ms")


def throughput(r: Mapping, bs: int, mode: str = "interleaved") -> float | None:
    src = r if mode == "interleaved" else r.get("alone") or {}
    return (src.get("throughput") or {}).get(str(bs))
