"""The matrix of paths: every engine x the precisions it runs natively here, plus the peer rows.

BF16 is included where the CPU runs it natively (emulated only when asked for). INT8 is included
when ``--precisions`` asks for it or, by default, where the engine's INT8 flow is installed
(``ipex_resnet.quantization``). The eager FP32 reference is always included: every "x eager"
ratio and the gate are taken against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

REFERENCE = "eager/fp32"


@dataclass(frozen=True)
class PathSpec:
    """One row: an ipex_resnet engine at a precision, or a peer runtime used directly."""

    backend: str
    precision: str
    peer: bool = False

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.precision}" + (" (peer)" if self.peer else "")

    @property
    def kind(self) -> str:
        return "peer" if self.peer else "ipex_resnet"

    @property
    def id(self) -> str:
        """For pytest ids and file names."""
        return ("peer-" if self.peer else "") + f"{self.backend}-{self.precision}"


def int8_ready(engine: str) -> str | None:
    """None when ``load(..., precision="int8", calibration=...)`` can run for ``engine``, else why not
    (the engine's quantization flow asks for its own libraries: torchao, NNCF, ONNX Runtime, IPEX)."""
    from ipex_resnet.errors import ConfigError
    from ipex_resnet.quantization import engine_module

    try:
        flow = engine_module(engine)
    except ConfigError as exc:
        return str(exc)
    ok, why = flow.status()
    return None if ok else why


def matrix(
    cpu,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    *,
    emulated_bf16: bool = False,
    peers: Sequence[str] | None = None,
    availability: Mapping[str, tuple[bool, str]] | None = None,
    peer_availability: Mapping[str, tuple[bool, str]] | None = None,
    int8: Mapping[str, str | None] | None = None,
) -> tuple[list[PathSpec], dict[str, str]]:
    """The paths this machine can run, and ``{path name: reason}`` for the ones it skips.

    ``availability`` (engines), ``peer_availability`` (peer rows by name) and ``int8`` (engine ->
    None or why its INT8 flow cannot run) default to what is installed; tests inject them.
    """
    from ipex_resnet import engines

    avail = engines.availability() if availability is None else availability
    names = [n for n in engines.names() if backends is None or n in backends]
    int8 = {n: int8_ready(n) for n in names} if int8 is None else int8
    explicit = precisions is not None
    if precisions is None:
        precisions = ["fp32", "bf16"] + (["int8"] if any(v is None for v in int8.values()) else [])
    skipped: dict[str, str] = {}
    paths = _engine_paths(cpu, names, precisions, explicit, avail, int8, emulated_bf16, skipped)
    if PathSpec("eager", "fp32") not in paths:
        paths.insert(0, PathSpec("eager", "fp32"))
    paths += _peer_paths(cpu, precisions, peers, peer_availability, skipped)
    return paths, skipped


def _engine_paths(
    cpu,
    names: Sequence[str],
    precisions: Sequence[str],
    explicit: bool,
    avail: Mapping[str, tuple[bool, str]],
    int8: Mapping[str, str | None],
    emulated_bf16: bool,
    skipped: dict[str, str],
) -> list[PathSpec]:
    """Each engine of ``names`` at each of ``precisions`` that runs here; why not into ``skipped`` (a
    precision the engine does not run here is skipped silently unless the user asked for it)."""
    from ipex_resnet import engines

    paths: list[PathSpec] = []
    for b in names:
        ok, why = avail.get(b, (False, "unknown engine"))
        supported = engines.get(b).precisions(cpu) if ok else ()
        for p in precisions:
            spec = PathSpec(b, p)
            if not ok:
                skipped[spec.name] = why
                continue
            if p not in supported:
                if explicit and b != "eager":
                    skipped[spec.name] = f"{b} runs {', '.join(supported)} on this CPU"
                continue
            why_not = _plan_problem(cpu, b, p, avail, int8, emulated_bf16)
            if why_not:
                skipped[spec.name] = why_not
            else:
                paths.append(spec)
    return paths


def _plan_problem(
    cpu, backend: str, precision: str, avail: Mapping, int8: Mapping[str, str | None], emulated_bf16: bool
) -> str | None:
    """Why ``backend`` cannot be a path at ``precision`` though it runs that precision here (its INT8 flow
    is missing, no plan, or BF16 would be emulated unasked), or None."""
    from ipex_resnet.core.policy import make_plan
    from ipex_resnet.errors import IpexResnetError

    why_not = int8.get(backend) if precision == "int8" else None
    if why_not:
        return why_not
    try:
        plan = make_plan(cpu, backend, precision, 1, availability=avail, env={})
    except IpexResnetError as exc:
        return str(exc)
    if plan.emulated_bf16 and not emulated_bf16:
        return "bf16 would be emulated on this CPU (no AVX512_BF16/AMX); ask for it explicitly"
    return None


def _peer_paths(
    cpu,
    precisions: Sequence[str],
    peers: Sequence[str] | None,
    peer_availability: Mapping[str, tuple[bool, str]] | None,
    skipped: dict[str, str],
) -> list[PathSpec]:
    """The peer rows for ``peers`` (default: every engine with one) at ``precisions`` that run here; why
    not into ``skipped``."""
    from ipex_resnet.benchmarking import peers as peer_registry

    paths: list[PathSpec] = []
    want_peers = peer_registry.engines_with_peers() if peers is None else tuple(peers)
    for row in peer_registry.rows():
        if row.engine not in want_peers or row.precision not in precisions:
            continue
        spec = PathSpec(row.engine, row.precision, peer=True)
        ok, why = (peer_availability or {}).get(row.name) or row.status(cpu)
        if not ok:
            skipped[spec.name] = why
        elif row.precision == "bf16" and not cpu.has_native_bf16:
            skipped[spec.name] = "no native BF16 on this CPU"
        else:
            paths.append(spec)
    return paths


__all__ = ["PathSpec", "REFERENCE", "int8_ready", "matrix"]
