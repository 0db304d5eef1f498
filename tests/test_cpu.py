"""CPU probe on fixtures of real CPUs, on this machine, and its cross-check with torch."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

from ipex_resnet.hardware.cpu import cross_check, merge, parse_cpuinfo, parse_lscpu, probe, torch_view

CPUS = FIXTURES / "cpus"

# name: (vendor, sockets, physical cores, logical, isa level, native bf16, flags that must be present/absent)
EXPECTED = {
    "sapphire_rapids": (
        "GenuineIntel",
        2,
        4,
        8,
        "avx512_core_amx",
        True,
        {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"},
        set(),
    ),
    "ice_lake": (
        "GenuineIntel",
        2,
        4,
        8,
        "avx512_core_vnni",
        False,
        {"avx512f", "avx512_vnni"},
        {"avx512_bf16", "amx_bf16"},
    ),
    "cooper_lake": ("GenuineIntel", 1, 4, 8, "avx512_core_bf16", True, {"avx512_bf16", "avx512_vnni"}, {"amx_tile"}),
    "skylake_sp": (
        "GenuineIntel",
        2,
        4,
        4,
        "avx512_core",
        False,
        {"avx512f", "avx512bw", "avx512vl", "avx512dq"},
        {"avx512_vnni"},
    ),
    "zen4_genoa": ("AuthenticAMD", 1, 4, 8, "avx512_core_bf16", True, {"avx512_bf16", "avx512f"}, {"amx_tile"}),
    "zen3_milan": ("AuthenticAMD", 1, 2, 2, "avx2", False, {"avx2", "fma"}, {"avx512f", "avx512_bf16"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_cpuinfo_fixture(name):
    vendor, sockets, cores, logical, isa, bf16, present, absent = EXPECTED[name]
    info = parse_cpuinfo((CPUS / f"{name}.cpuinfo").read_text())
    assert info.vendor == vendor
    assert info.model_name.startswith(("Intel(R) Xeon(R)", "AMD EPYC"))
    assert (info.sockets, info.physical_cores, info.logical_cpus) == (sockets, cores, logical)
    assert info.isa_level == isa
    assert info.has_native_bf16 is bf16
    assert present <= info.flags and not (absent & info.flags)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lscpu_agrees_with_cpuinfo_and_adds_numa(name):
    a = parse_cpuinfo((CPUS / f"{name}.cpuinfo").read_text())
    b = parse_lscpu((CPUS / f"{name}.lscpu").read_text())
    assert (b.sockets, b.physical_cores, b.flags, b.model_name) == (a.sockets, a.physical_cores, a.flags, a.model_name)
    merged = merge(a, b)
    assert merged.numa_nodes == EXPECTED[name][1]
    assert merged.disagreements == ()


def test_flag_mismatch_between_sources_is_reported():
    a = parse_cpuinfo((CPUS / "ice_lake.cpuinfo").read_text())
    b = parse_lscpu((CPUS / "cooper_lake.lscpu").read_text())
    assert any("avx512_bf16" in d for d in merge(a, b).disagreements)


def test_this_machine_capture():
    info = merge(
        parse_cpuinfo((CPUS / "this_machine_2026-11.cpuinfo").read_text()),
        parse_lscpu((CPUS / "this_machine_2026-11.lscpu").read_text()),
    )
    assert info.vendor == "AuthenticAMD" and info.physical_cores == 2 and info.numa_nodes == 1
    assert info.isa_level == "avx512_core_bf16"  # this KVM guest exposes Zen 4's AVX-512 + BF16


def test_cross_check_reports_disagreement():
    spr = parse_cpuinfo((CPUS / "sapphire_rapids.cpuinfo").read_text())
    ok = cross_check(spr, {"capability": "AVX512", "avx512f": True, "amx_tile": True, "avx512_bf16": True})
    assert ok.disagreements == ()
    bad = cross_check(spr, {"capability": "AVX2", "avx512f": False, "amx_tile": True})
    joined = " | ".join(bad.disagreements)
    assert "torch says avx512f=no" in joined and "torch dispatches AVX2" in joined
    assert "DISAGREEMENT" in bad.describe()
    ipex_disagrees = cross_check(spr, None, ipex_isa="AVX2")
    assert any("IPEX reports ISA AVX2" in d for d in ipex_disagrees.disagreements)


def test_live_probe_agrees_with_torch():
    info = probe()
    assert info.logical_cpus >= 1 and info.physical_cores >= 1 and info.numa_nodes >= 1
    assert "torch" in info.reports
    view = torch_view()
    assert view["avx2"] == ("avx2" in info.flags)
    assert info.disagreements == (), info.disagreements
    d = info.to_dict()
    # the tracked flags as booleans, each as /proc/cpuinfo lists it for this machine
    listed = set(
        next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
        .split(":")[1]
        .split()
    )
    assert {"avx512f", "avx512_bf16", "amx_bf16", "avx_ne_convert"} <= set(d["flags"])
    assert d["flags"] == {f: f in listed for f in d["flags"]}
