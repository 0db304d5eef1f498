"""Saved baselines of ``ipex-resnet bench`` (``--save-baseline NAME`` / ``--gate NAME``) and of the pytest
plugin's fixture.

A baseline is one JSON file ``<dir>/<machine key>/<model spec key>/<NAME>.json``: ``<dir>`` is
``--baseline-dir`` or ``<artifact cache root>/baselines``; the machine key is the report's (CPU model, ISA
level, torch/IPEX versions, threads), so two SKUs or stacks never judge each other; the model spec key is
the model, its weights (a checkpoint by file name) and its preset, so another model never gates against
this one. The file holds the report and the gate's entries (:func:`ipex_resnet.benchmarking.verdict.entries`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ipex_resnet.errors import ConfigError
from ipex_resnet.models.spec import ModelSpec

BASELINE_SCHEMA = "ipex_resnet.baseline/1"
LATEST = "latest"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(name: str | None, option: str) -> str | None:
    """A baseline name is a plain file name: letters, digits, ``.``, ``_``, ``-`` (at most 64)."""
    if name is None:
        return None
    if not _NAME.fullmatch(name) or name == LATEST and option != "--gate":
        raise ConfigError(
            f"{option} {name!r}: a baseline name is 1-64 letters, digits, '.', '_' or '-' "
            f"(and not {LATEST!r} when saving)"
        )
    return name


def default_dir() -> Path:
    from ipex_resnet.core.cache import root

    return root() / "baselines"


def base_dir(given: str | None) -> Path:
    return Path(given).expanduser() if given else default_dir()


def model_spec(model: ModelSpec) -> dict:
    """What a baseline is keyed on besides the machine: a checkpoint counts by file name, so the same
    model trained again (or checked out elsewhere) still gates against its baseline; categories count
    only when given (a baseline saved without them keeps its key)."""
    spec: dict[str, Any] = {"model": model.model, "weights": Path(model.weights).name, "preset": model.preset_dict}
    if model.categories:
        spec["categories"] = list(model.categories)
    return json.loads(json.dumps(spec, sort_keys=True, default=str))  # as it reads back from the file


def spec_key(spec: Mapping) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(spec["model"])).strip("-").lower()[:40] or "model"
    return f"{slug}-{digest}"


def current_machine_key(threads: int | None) -> str:
    """The machine key this run's report will carry (the same probe and plan as ``run_report``)."""
    from ipex_resnet.benchmarking.machine import machine_key, versions
    from ipex_resnet.core.api import plan_for
    from ipex_resnet.hardware.cpu import probe

    cpu = probe()
    return machine_key(cpu, versions(), threads or plan_for(cpu, "auto", "auto", threads).threads)


def _mismatch(name: str, theirs: str, ours: str) -> ConfigError:
    return ConfigError(
        f"baseline {name!r} is from machine key {theirs}, this run is machine key {ours}: times are "
        "not comparable across CPUs, stacks or thread counts; save one here with --save-baseline"
    )


def find(directory: Path, machine_key: str, spec: Mapping, name: str) -> Path:
    """The baseline file for (machine key, model spec, name); ``latest``: the newest. ConfigError when
    there is none, naming the other machine key when the name exists only there."""
    if name != LATEST:
        check_name(name, "--gate")
    here = directory / machine_key / spec_key(spec)
    if name == LATEST:
        files = sorted(here.glob("*.json"), key=lambda p: p.stat().st_mtime)
        if files:
            return files[-1]
    elif (here / f"{name}.json").is_file():
        return here / f"{name}.json"
    pattern = f"*/{spec_key(spec)}/{'*' if name == LATEST else name}.json"
    elsewhere = sorted(p.parent.parent.name for p in directory.glob(pattern))
    if elsewhere:
        raise _mismatch(name, elsewhere[0], machine_key)
    which = "no baseline" if name == LATEST else f"no baseline {name!r}"
    raise ConfigError(
        f"{which} for model {spec['model']} on machine key {machine_key} in {directory}; "
        "save one first with --save-baseline NAME"
    )


def _method_key(method: Mapping | None) -> str | None:
    """What must match between a baseline's timing and this run's: the estimator and the threads (rounds
    and processes only change how tight the estimate is)."""
    if not method:
        return None
    return f"the {method.get('estimator')} estimator at {method.get('threads')} thread(s)"


def load(path: Path, machine_key: str, spec: Mapping, method: Mapping) -> dict:
    """Read a baseline file; refuse one of another machine key, model spec or timing method (ConfigError,
    one line)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"baseline {str(path)!r} is unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != BASELINE_SCHEMA or not isinstance(doc.get("benchmarks"), list):
        raise ConfigError(f"baseline {str(path)!r} is not an ipex-resnet baseline (schema {BASELINE_SCHEMA})")
    if doc.get("machine_key") != machine_key:
        raise _mismatch(doc.get("name", Path(path).stem), str(doc.get("machine_key")), machine_key)
    theirs, ours = _method_key(doc.get("gate_method")), _method_key(method)
    if theirs != ours:
        raise ConfigError(
            f"baseline {str(path)!r} was timed by {theirs or 'an older gate (ratio of minimums)'}, this "
            f"gate times by {ours}: the ratios are not comparable; save it again with --save-baseline"
        )
    if doc.get("model_spec") != dict(spec):
        raise ConfigError(f"baseline {str(path)!r} is of model spec {doc.get('model_spec')}, this run is {dict(spec)}")
    doc["_file"] = str(path)
    return doc


def save(directory: Path, name: str, report: Mapping, spec: Mapping, benchmarks: list[dict], method: Mapping) -> Path:
    """Write baseline ``name`` for the report's machine key and ``spec`` (atomically); returns its path."""
    from ipex_resnet.util.files import write_json_atomic

    path = directory / report["machine_key"] / spec_key(spec) / f"{name}.json"
    write_json_atomic(
        path,
        {
            "schema": BASELINE_SCHEMA,
            "name": name,
            "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine_key": report["machine_key"],
            "model_spec": dict(spec),
            "gate_method": dict(method),
            "benchmarks": benchmarks,
            "report": dict(report),
        },
        indent=1,
        default=str,
    )
    return path


__all__ = [
    "BASELINE_SCHEMA",
    "LATEST",
    "base_dir",
    "check_name",
    "current_machine_key",
    "default_dir",
    "find",
    "load",
    "model_spec",
    "save",
    "spec_key",
]
