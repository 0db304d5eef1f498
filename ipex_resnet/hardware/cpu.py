"""CPU probe: what this processor can do for inference.

The parsers take text (``/proc/cpuinfo``, ``lscpu``) rather than reading the machine, so the probe is
tested on fixtures of real CPUs without the hardware. :func:`probe` reads the live machine and
cross-checks the flags against torch's own capability report and, when IPEX is importable, IPEX's.
A disagreement is recorded in ``CPUInfo.disagreements``, never hidden.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# The flags the loader cares about, by their /proc/cpuinfo names.
TRACKED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
    "avx_ne_convert",
)

# AVX-512 "core" (Skylake-SP and later): what oneDNN, IPEX and torch's AVX512 kernels need.
AVX512_CORE = ("avx512f", "avx512bw", "avx512vl", "avx512dq")


@dataclass(frozen=True)
class CPUInfo:
    """What the probe found. ``flags`` holds only :data:`TRACKED_FLAGS` that are present."""

    vendor: str = "unknown"
    model_name: str = "unknown"
    logical_cpus: int = 0
    physical_cores: int = 0
    sockets: int = 0
    numa_nodes: int = 0
    flags: frozenset[str] = frozenset()
    source: str = "injected"
    disagreements: tuple[str, ...] = ()
    reports: dict[str, str] = field(default_factory=dict)  # other parties' view: torch, ipex

    def has(self, *names: str) -> bool:
        return all(n in self.flags for n in names)

    # Named capability checks (used by the precision policy).
    @property
    def has_avx512_core(self) -> bool:
        return self.has(*AVX512_CORE)

    @property
    def has_amx_bf16(self) -> bool:
        return self.has("amx_tile", "amx_bf16")

    @property
    def has_avx512_bf16(self) -> bool:
        return self.has_avx512_core and self.has("avx512_bf16")

    @property
    def has_native_bf16(self) -> bool:
        return self.has_amx_bf16 or self.has_avx512_bf16

    @property
    def int8_dot_isa(self) -> str | None:
        """What runs 8-bit dot products natively (accumulating in int32), or None: without it, oneDNN's
        u8*s8 kernels sum pairs in saturating int16 (its "Nuances of int8 Computations")."""
        if self.has("amx_tile", "amx_int8"):
            return "AMX-INT8 tiles"
        if self.has("avx512_vnni"):
            return "AVX512_VNNI"
        if self.has("avx_vnni"):
            return "AVX_VNNI"
        return None

    @property
    def isa_level(self) -> str:
        """The highest ISA level, named as oneDNN names them: default, avx2, avx512_core,
        avx512_core_vnni, avx512_core_bf16 or avx512_core_amx."""
        if not self.has_avx512_core:
            return "avx2" if self.has("avx2", "fma") else "default"
        if self.has_amx_bf16:
            return "avx512_core_amx"
        if self.has("avx512_bf16"):
            return "avx512_core_bf16"
        if self.has("avx512_vnni"):
            return "avx512_core_vnni"
        return "avx512_core"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["flags"] = {f: f in self.flags for f in TRACKED_FLAGS}
        d["isa_level"] = self.isa_level
        d["native_bf16"] = self.has_native_bf16
        d["disagreements"] = list(self.disagreements)
        return d

    def describe(self) -> str:
        present = [f for f in TRACKED_FLAGS if f in self.flags]
        lines = [
            f"cpu:          {self.model_name} ({self.vendor})",
            f"topology:     {self.sockets} socket(s), {self.physical_cores} physical core(s), "
            f"{self.logical_cpus} logical CPU(s), {self.numa_nodes} NUMA node(s)",
            f"isa level:    {self.isa_level}",
            f"flags:        {' '.join(present) or '(none of the tracked flags)'}",
            f"missing:      {' '.join(f for f in TRACKED_FLAGS if f not in self.flags) or '-'}",
        ]
        for who, what in sorted(self.reports.items()):
            lines.append(f"{who + ' says:':<14}{what}")
        for d in self.disagreements:
            lines.append(f"DISAGREEMENT: {d}")
        return "\n".join(lines)


def _split_kv(line: str) -> tuple[str, str] | None:
    if ":" not in line:
        return None
    k, v = line.split(":", 1)
    return k.strip(), v.strip()


def parse_cpuinfo(text: str) -> CPUInfo:
    """Parse ``/proc/cpuinfo`` text (x86 layout). Topology comes from physical id / core id."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    vendor = model = "unknown"
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    logical = 0
    for block in blocks:
        entry = dict(kv for kv in map(_split_kv, block.splitlines()) if kv)
        if "processor" not in entry:
            continue
        logical += 1
        vendor = entry.get("vendor_id", vendor)
        model = entry.get("model name", model)
        if "flags" in entry:
            flags |= set(entry["flags"].split())
        phys = entry.get("physical id", "0")
        sockets.add(phys)
        cores.add((phys, entry.get("core id", str(logical))))
    return CPUInfo(
        vendor=vendor,
        model_name=model,
        logical_cpus=logical,
        physical_cores=len(cores),
        sockets=len(sockets),
        numa_nodes=0,  # /proc/cpuinfo does not say; lscpu or sysfs does
        flags=frozenset(flags) & frozenset(TRACKED_FLAGS),
        source="cpuinfo",
    )


def parse_lscpu(text: str) -> CPUInfo:
    """Parse plain ``lscpu`` output."""
    kv = dict(x for x in map(_split_kv, text.splitlines()) if x)

    def num(key: str, default: int = 0) -> int:
        m = re.match(r"\d+", kv.get(key, ""))
        return int(m.group()) if m else default

    sockets = num("Socket(s)", 1)
    per_socket = num("Core(s) per socket")
    return CPUInfo(
        vendor=kv.get("Vendor ID", "unknown"),
        model_name=kv.get("Model name", "unknown"),
        logical_cpus=num("CPU(s)"),
        physical_cores=sockets * per_socket,
        sockets=sockets,
        numa_nodes=num("NUMA node(s)", 1),
        flags=frozenset(kv.get("Flags", "").split()) & frozenset(TRACKED_FLAGS),
        source="lscpu",
    )


def merge(cpuinfo: CPUInfo | None, lscpu: CPUInfo | None) -> CPUInfo:
    """Combine both views: flags and topology from /proc/cpuinfo, NUMA nodes from lscpu.

    Where both name flags and they differ, that is recorded as a disagreement.
    """
    if cpuinfo is None and lscpu is None:
        return CPUInfo(source="none")
    if cpuinfo is None or lscpu is None:
        return cpuinfo or lscpu  # type: ignore[return-value]
    notes = list(cpuinfo.disagreements)
    if lscpu.flags and lscpu.flags != cpuinfo.flags:
        diff = sorted(cpuinfo.flags ^ lscpu.flags)
        notes.append(f"/proc/cpuinfo and lscpu list different flags: {' '.join(diff)}")
    return dataclasses.replace(
        cpuinfo,
        numa_nodes=lscpu.numa_nodes or cpuinfo.numa_nodes,
        physical_cores=cpuinfo.physical_cores or lscpu.physical_cores,
        sockets=cpuinfo.sockets or lscpu.sockets,
        source="cpuinfo+lscpu",
        disagreements=tuple(notes),
    )


def _count_numa_nodes_sysfs() -> int:
    base = Path("/sys/devices/system/node")
    return len(list(base.glob("node[0-9]*"))) if base.is_dir() else 0


@functools.lru_cache(maxsize=1)
def _live_texts() -> tuple[str | None, str | None]:
    """This machine's ``/proc/cpuinfo`` and ``lscpu`` text, read once per process (the CPU does not change
    under it; the INT8 flows and the artifact key ask on every build)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = None
    return cpuinfo, _read_lscpu()


def _read_lscpu() -> str | None:
    exe = shutil.which("lscpu")
    if not exe:
        return None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def torch_view() -> dict[str, bool | str]:
    """What torch itself reports about this CPU (its dispatch capability and feature checks)."""
    import torch

    view: dict[str, bool | str] = {"capability": torch.backends.cpu.get_cpu_capability()}
    for flag, fn in (
        ("avx2", "_is_avx2_supported"),
        ("avx512f", "_is_avx512_supported"),
        ("avx512_vnni", "_is_vnni_supported"),
        ("avx512_bf16", "_is_avx512_bf16_supported"),
        ("amx_tile", "_is_amx_tile_supported"),
    ):
        check = getattr(torch.cpu, fn, None)
        if check is not None:
            try:
                view[flag] = bool(check())
            except Exception:
                pass
    return view


def cross_check(info: CPUInfo, torch_report: dict | None, ipex_isa: str | None = None) -> CPUInfo:
    """Compare the parsed flags with torch's (and IPEX's) view; record any disagreement."""
    notes = list(info.disagreements)
    reports = dict(info.reports)
    if torch_report is not None:
        cap = str(torch_report.get("capability", "?"))
        reports["torch"] = (
            "capability "
            + cap
            + "; "
            + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in torch_report.items() if k != "capability")
        )
        for flag, val in torch_report.items():
            if flag == "capability" or not isinstance(val, bool):
                continue
            ours = info.has(*AVX512_CORE) if flag == "avx512f" else flag in info.flags
            if val != ours:
                notes.append(f"torch says {flag}={'yes' if val else 'no'}, cpu flags say {'yes' if ours else 'no'}")
        expected = "AVX512" if info.has_avx512_core else ("AVX2" if info.has("avx2") else "DEFAULT")
        if cap.upper() not in (expected, "ZVECTOR", "VSX", "NEON", "SVE256"):
            reason = ""
            if os.environ.get("ATEN_CPU_CAPABILITY"):
                reason = f" (ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']} is set)"
            notes.append(f"torch dispatches {cap} kernels but the flags allow {expected}{reason}")
    if ipex_isa:
        reports["ipex"] = f"isa {ipex_isa}"
        our_isa = info.isa_level
        theirs = ipex_isa.lower()
        if theirs.startswith("avx512") and not info.has_avx512_core or ("amx" in theirs) != ("amx" in our_isa):
            notes.append(f"IPEX reports ISA {ipex_isa}, cpu flags give {our_isa}")
    return dataclasses.replace(info, disagreements=tuple(notes), reports=reports)


def probe(
    cpuinfo_text: str | None = None,
    lscpu_text: str | None = None,
    *,
    check_torch: bool = True,
    ipex_isa: str | None = None,
) -> CPUInfo:
    """Probe this machine (or the injected text) and cross-check with torch's view (and IPEX's ISA
    level when the caller has it: IPEX lives in the engine layer above this one)."""
    live = cpuinfo_text is None and lscpu_text is None
    if live:
        cpuinfo_text, lscpu_text = _live_texts()
    info = merge(parse_cpuinfo(cpuinfo_text) if cpuinfo_text else None, parse_lscpu(lscpu_text) if lscpu_text else None)
    if live and not info.numa_nodes:
        info = dataclasses.replace(info, numa_nodes=_count_numa_nodes_sysfs() or 1)
    if live and not info.logical_cpus:
        info = dataclasses.replace(info, logical_cpus=os.cpu_count() or 0)
    if live and check_torch:
        info = cross_check(info, torch_view(), ipex_isa)
    return info
