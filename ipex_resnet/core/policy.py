"""The plan: which engine ("backend"), precision, memory format and thread count, and why each was chosen.

:func:`make_plan` is a pure function of the CPU probe, the requested options, the environment and
which backends are available, so every branch is testable on injected CPUs. Resolution order for
each setting: explicit argument -> environment override (for fleets) -> automatic choice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ipex_resnet import engines
from ipex_resnet.errors import BackendUnavailable, ConfigError
from ipex_resnet.hardware.cpu import CPUInfo

PRECISIONS = engines.PRECISIONS
AUTO = "auto"

ENV_BACKEND = "IPEX_RESNET_BACKEND"
ENV_PRECISION = "IPEX_RESNET_PRECISION"
ENV_THREADS = "IPEX_RESNET_THREADS"
ENV_STREAMS = "IPEX_RESNET_STREAMS"


@dataclass(frozen=True)
class Plan:
    """What the loader will do, with a one-line reason for each choice."""

    backend: str
    precision: str
    memory_format: str
    threads: int
    native_bf16: bool
    isa_level: str
    reasons: Mapping[str, str]
    options: Mapping[str, object] = field(default_factory=dict)
    measured: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    model: str = "?"
    weights: str = "?"
    #: inference streams: calls that run at once, each on threads // streams of the cores
    streams: int = 1

    @property
    def threads_per_stream(self) -> int:
        return max(1, self.threads // max(1, self.streams))

    @property
    def emulated_bf16(self) -> bool:
        return self.precision == "bf16" and not self.native_bf16

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["reasons"] = dict(self.reasons)
        d["options"] = dict(self.options)
        d["measured"] = dict(self.measured)
        d["warnings"] = list(self.warnings)
        d["notes"] = list(self.notes)
        d["emulated_bf16"] = self.emulated_bf16
        return d

    def describe(self) -> str:
        rows: list[tuple[str, object, str | None]] = [("model", self.model, None), ("weights", self.weights, None)]
        rows += [
            (k, getattr(self, k), self.reasons.get(k)) for k in ("backend", "precision", "memory_format", "threads")
        ]
        rows.append(
            (
                "streams",
                f"{self.streams} x {self.threads_per_stream} thread{'s' if self.threads_per_stream != 1 else ''}",
                self.reasons.get("streams"),
            )
        )
        lines = []
        for key, value, why in rows:
            lines.append(f"{key + ':':<15}{value}" + (f"  -- {why}" if why else ""))
        if self.options:
            lines.append(f"{'options:':<15}" + ", ".join(f"{k}={v}" for k, v in self.options.items()))
        for name, row in (self.measured.get("engines") or {}).items():
            lines.append(f"{'measured:':<15}{name}: {row}")
        lines += [f"warning:       {w}" for w in self.warnings]
        lines += [f"note:          {n}" for n in self.notes]
        return "\n".join(lines)


def _pick(
    name: str, explicit: object, env: Mapping[str, str], env_key: str, allowed: tuple[str, ...]
) -> tuple[str, str]:
    """Return (value, source) where source is 'argument', 'env' or 'auto'."""
    if explicit is not None and str(explicit).lower() != AUTO:
        value = str(explicit).lower()
        if value not in allowed:
            raise ConfigError(f"unknown {name} {explicit!r}: choose one of {', '.join((AUTO,) + allowed)}")
        return value, "argument"
    raw = env.get(env_key, "").strip().lower()
    if raw and raw != AUTO:
        if raw not in allowed:
            raise ConfigError(
                f"{env_key}={env.get(env_key)!r} is not a {name}: choose one of {', '.join((AUTO,) + allowed)}"
            )
        return raw, "env"
    return AUTO, "auto"


def default_threads(cpu: CPUInfo, affinity: int | None = None) -> tuple[int, str]:
    cores = cpu.physical_cores or cpu.logical_cpus or 1
    why = "one thread per physical core (SMT siblings add nothing to GEMM-bound inference)"
    if cpu.sockets > 1:
        cores = max(1, cores // cpu.sockets)
        why = "the physical cores of one socket (crossing sockets adds remote-memory latency)"
    if affinity is not None and affinity < cores:
        return max(1, affinity), f"limited by the CPU affinity mask ({affinity} CPUs allowed)"
    return cores, why


def _resolve_backend(
    names: tuple[str, ...], backend: str | None, env: Mapping[str, str], availability: Mapping[str, tuple[bool, str]]
) -> tuple[str, str, list[str]]:
    """Return (backend, reason, notes): the requested one if it can run, else the first that runs here."""
    want, source = _pick("backend", backend, env, ENV_BACKEND, names)
    if want == AUTO:
        notes: list[str] = []
        for name in names:
            ok, why = availability.get(name, (False, "unknown backend"))
            if ok:
                return name, f"auto (static rule, first that runs here): {why}", notes
            notes.append(f"{name} not used: {why}")
        raise AssertionError("eager is always available")
    ok, why = availability.get(want, (False, "unknown backend"))
    if not ok:
        via = f" (from {ENV_BACKEND})" if source == "env" else ""
        raise BackendUnavailable(f"backend {want!r} was requested{via} but cannot run: {why}")
    return want, f"requested ({'env ' + ENV_BACKEND if source == 'env' else 'argument'})", []


def _bf16_hardware(cpu: CPUInfo) -> str | None:
    """What runs BF16 natively on this CPU, or None."""
    if cpu.has_amx_bf16:
        return "AMX-BF16 tiles"
    if cpu.has_avx512_bf16:
        return "AVX512_BF16 dot-product instructions"
    return None


def _auto_precision(cpu: CPUInfo, backend_name: str, supported: tuple[str, ...]) -> tuple[str, str]:
    """Return (precision, reason) when none was requested: BF16 where it is native and the engine runs it."""
    native = cpu.has_native_bf16
    if backend_name == "eager":
        return "fp32", "eager is the FP32 reference path"
    if native and "bf16" in supported:
        return "bf16", f"this CPU has native BF16 ({_bf16_hardware(cpu)})"
    if native:
        return "fp32", f"{backend_name} runs no BF16 here; FP32"
    return "fp32", "no native BF16 (neither AVX512_BF16 nor AMX-BF16): BF16 would be emulated, slower than FP32"


def _requested_precision(
    cpu: CPUInfo, backend_name: str, supported: tuple[str, ...], prec: str, via: str
) -> tuple[str, list[str]]:
    """Return (reason, warnings) for a requested precision; raise if the engine cannot run it here."""
    if prec not in supported:
        raise BackendUnavailable(
            f"{backend_name} cannot run {prec} on this CPU (it runs "
            f"{', '.join(supported)}); choose another precision or backend"
        )
    if prec == "bf16" and not cpu.has_native_bf16:
        return (
            f"requested ({via}); emulated: this CPU has no AVX512_BF16 or AMX-BF16",
            [
                "BF16 was requested but this CPU has no native BF16 (AVX512_BF16 or AMX-BF16): "
                "it is emulated and will be much slower than FP32; use precision='fp32' here"
            ],
        )
    if prec == "bf16":
        return f"requested ({via}); native via {_bf16_hardware(cpu)}", []
    if prec == "int8":
        int8_hw = cpu.int8_dot_isa
        if int8_hw:
            return f"requested ({via}); native INT8 dot products via {int8_hw}", []
        return (
            f"requested ({via}); no VNNI or AMX-INT8: INT8 runs on plain AVX2/AVX-512",
            [
                "INT8 was requested but this CPU has no VNNI (AVX512_VNNI / AVX_VNNI) or AMX-INT8: "
                "INT8 dot products are emulated with wider instructions and gain little over FP32"
            ],
        )
    return f"requested ({via})", []


def _resolve_precision(
    cpu: CPUInfo, backend_name: str, supported: tuple[str, ...], precision: str | None, env: Mapping[str, str]
) -> tuple[str, str, list[str]]:
    """Return (precision, reason, warnings): argument -> env -> automatic choice."""
    want, source = _pick("precision", precision, env, ENV_PRECISION, PRECISIONS)
    if want == AUTO:
        return (*_auto_precision(cpu, backend_name, supported), [])
    via = "env " + ENV_PRECISION if source == "env" else "argument"
    return (want, *_requested_precision(cpu, backend_name, supported, want, via))


def _memory_format_reason(mem: str) -> str:
    return (
        "eager is the unmodified reference" if mem == "contiguous" else "oneDNN convolutions run NHWC without reorders"
    )


def _resolve_threads(
    cpu: CPUInfo, threads: int | None, env: Mapping[str, str], affinity: int | None
) -> tuple[int, str]:
    """Return (threads, reason): argument -> env -> one per physical core of one socket."""
    if threads is not None:
        n, why = int(threads), "requested (argument)"
    elif env.get(ENV_THREADS, "").strip():
        raw = env[ENV_THREADS].strip()
        if not raw.isdigit() or int(raw) < 1:
            raise ConfigError(f"{ENV_THREADS}={raw!r} is not a positive whole number")
        n, why = int(raw), f"requested (env {ENV_THREADS})"
    else:
        n, why = default_threads(cpu, affinity)
    if n < 1:
        raise ConfigError(f"threads must be at least 1, got {n}")
    return n, why


STREAMS_DEFAULT = (
    "one stream: every call gets all the threads (lowest latency for one caller); "
    "the measured auto picks more where they pay"
)


def requested_streams(streams: int | str | None, env: Mapping[str, str]) -> tuple[int | None, str]:
    """``(count or None for auto, reason)``: argument -> env ``IPEX_RESNET_STREAMS`` -> auto."""
    raw, via = streams, "argument"
    if raw is None or str(raw).strip().lower() == AUTO:
        raw, via = env.get(ENV_STREAMS, "").strip(), f"env {ENV_STREAMS}"
        if not raw or raw.lower() == AUTO:
            return None, STREAMS_DEFAULT
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        where = f"{ENV_STREAMS}={raw!r}" if via.startswith("env") else f"streams={raw!r}"
        raise ConfigError(f"{where} is not a positive whole number (or auto)")
    return int(text), f"requested ({via})"


def _resolve_streams(streams: int | str | None, env: Mapping[str, str], threads: int) -> tuple[int, str]:
    n, why = requested_streams(streams, env)
    if n is None:
        return 1, why
    if n > threads:
        raise ConfigError(
            f"{n} streams need at least {n} threads (one each); the plan has {threads}: "
            f"ask for fewer streams or more threads"
        )
    return n, why


def make_plan(
    cpu: CPUInfo,
    backend: str | None = AUTO,
    precision: str | None = AUTO,
    threads: int | None = None,
    *,
    availability: Mapping[str, tuple[bool, str]],
    env: Mapping[str, str] | None = None,
    affinity: int | None = None,
    streams: int | str | None = AUTO,
) -> Plan:
    """Decide the plan.

    ``availability`` maps each backend name to ``(available, reason_or_install_hint)``.
    """
    env = os.environ if env is None else env
    reasons: dict[str, str] = {}
    backend_name, reasons["backend"], notes = _resolve_backend(engines.names(), backend, env, availability)
    engine = engines.get(backend_name)
    prec, reasons["precision"], warnings = _resolve_precision(cpu, backend_name, engine.precisions(cpu), precision, env)
    # memory format and engine options: each engine decides its own
    mem = engine.memory_format
    reasons["memory_format"] = _memory_format_reason(mem)
    options, option_warnings = engine.plan_options(prec, cpu.has_native_bf16)
    warnings.extend(option_warnings)
    n, reasons["threads"] = _resolve_threads(cpu, threads, env, affinity)
    n_streams, reasons["streams"] = _resolve_streams(streams, env, n)
    return Plan(
        backend=backend_name,
        precision=prec,
        memory_format=mem,
        threads=n,
        streams=n_streams,
        native_bf16=cpu.has_native_bf16,
        isa_level=cpu.isa_level,
        reasons=reasons,
        options=options,
        warnings=tuple(warnings),
        notes=tuple(notes),
    )
