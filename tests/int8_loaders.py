"""Load a quantization flow's artifact with the engine's own loader (what load() does), so the INT8
tests also prove that every engine reads what its flow writes."""

from __future__ import annotations

import warnings
from pathlib import Path


def load(engine: str, out_dir: Path, threads: int = 1):
    from ipex_resnet import engines, probe
    from ipex_resnet.core.policy import make_plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-VNNI PlanWarning on CPUs without it
        plan = make_plan(probe(check_torch=False), engine, "int8", threads, availability=engines.availability(), env={})
    return engines.get(engine).load(Path(out_dir), plan)
