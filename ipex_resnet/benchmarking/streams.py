"""The report's streams row: on one path, batch-1 throughput with every stream busy and the lone-call
latency for each stream count (streams x threads per stream), measured as the loader's auto does, so a
user sees when streams pay on this CPU (on a 2-core box they rarely can; on a many-core Xeon they are
how the engines reach their throughput)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ipex_resnet.benchmarking.paths import Built, Workspace


def measure(built: Built, ws: Workspace, threads: int) -> dict[str, Any]:
    """``{"path", "rows": {"NxT": {"streams", "img_s", "b1_ms"}}, "chosen"}`` for the built path ``built``."""
    from ipex_resnet.core.autoselect import measure_streams

    def load_plan(plan: Any) -> Any:
        return ws.load(plan.backend, plan.precision, plan.threads, plan.streams)

    plan = dataclasses.replace(built.classifier.plan, threads=threads, streams=1)
    record = measure_streams(plan, load_plan)
    return {"path": built.spec.name, **record}


def lines(section: dict | None) -> list[str]:
    """The streams row of the text report."""
    if not section:
        return []
    if "error" in section:
        return [f"streams: not measured: {section['error']}"]
    cells = ", ".join(
        f"{name}: {r['img_s']:g} img/s, lone call {r['b1_ms']:.1f} ms" for name, r in section["rows"].items()
    )
    return [
        f"streams x threads on {section['path']} (batch 1, every stream busy): {cells}; "
        f"the loader's auto would pick {section['chosen']}"
    ]


__all__ = ["lines", "measure"]
