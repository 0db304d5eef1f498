"""Precision / backend / threads policy on every fixture CPU, with injected availability and env."""

from __future__ import annotations

import pytest
from conftest import FIXTURES

from ipex_resnet.core.policy import make_plan
from ipex_resnet.errors import BackendUnavailable, ConfigError
from ipex_resnet.hardware.cpu import merge, parse_cpuinfo, parse_lscpu

ALL = {"ipex": (True, "IPEX 2.8.0 matches torch 2.8.0"), "inductor": (True, "Inductor"), "eager": (True, "eager")}
NO_IPEX = {**ALL, "ipex": (False, "IPEX is not installed; for it: pip install intel-extension-for-pytorch==2.8.0")}


def cpu(name: str):
    return merge(
        parse_cpuinfo((FIXTURES / "cpus" / f"{name}.cpuinfo").read_text()),
        parse_lscpu((FIXTURES / "cpus" / f"{name}.lscpu").read_text()),
    )


# fixture: (auto precision, words the reason must contain)
AUTO = {
    "sapphire_rapids": ("bf16", "AMX-BF16"),
    "cooper_lake": ("bf16", "AVX512_BF16"),
    "zen4_genoa": ("bf16", "AVX512_BF16"),
    "ice_lake": ("fp32", "no native BF16"),
    "skylake_sp": ("fp32", "no native BF16"),
    "zen3_milan": ("fp32", "no native BF16"),
}


@pytest.mark.parametrize("name", sorted(AUTO))
def test_auto_precision(name):
    plan = make_plan(cpu(name), availability=ALL, env={})
    want, words = AUTO[name]
    assert plan.precision == want
    assert words in plan.reasons["precision"]
    assert plan.backend == "ipex" and plan.memory_format == "channels_last"
    assert plan.warnings == ()
    assert "\n" not in plan.reasons["precision"]


@pytest.mark.parametrize("name", ["ice_lake", "skylake_sp"])
def test_explicit_bf16_without_native_warns_and_disables_prepack(name):
    plan = make_plan(cpu(name), "ipex", "bf16", availability=ALL, env={})
    assert plan.precision == "bf16" and plan.emulated_bf16
    assert plan.options["weights_prepack"] is False
    assert any("emulated" in w and "slower" in w for w in plan.warnings)
    assert any("weights_prepack was changed to False" in w for w in plan.warnings)


def test_ipex_runs_no_bf16_on_an_avx2_cpu():
    """oneDNN's BF16 kernels (native or emulated) need AVX-512, IPEX INT8 needs VNNI or AMX: on Zen 3
    both are a clear error, and auto plans FP32."""
    with pytest.raises(BackendUnavailable, match=r"ipex cannot run bf16 on this CPU \(it runs fp32\)"):
        make_plan(cpu("zen3_milan"), "ipex", "bf16", availability=ALL, env={})
    assert make_plan(cpu("zen3_milan"), "ipex", availability=ALL, env={}).precision == "fp32"
    # INT8 on IPEX needs VNNI or AMX (Ice Lake has AVX512_VNNI; Skylake-SP and Zen 3 have neither)
    assert make_plan(cpu("ice_lake"), "ipex", "int8", availability=ALL, env={}).precision == "int8"
    for name in ("zen3_milan", "skylake_sp"):
        with pytest.raises(BackendUnavailable, match="ipex cannot run int8 on this CPU"):
            make_plan(cpu(name), "ipex", "int8", availability=ALL, env={})


def test_explicit_bf16_with_native_keeps_prepack():
    plan = make_plan(cpu("sapphire_rapids"), "ipex", "bf16", availability=ALL, env={})
    assert plan.options["weights_prepack"] is True and plan.warnings == () and not plan.emulated_bf16


def test_env_override_and_argument_precedence():
    spr = cpu("sapphire_rapids")
    assert make_plan(spr, availability=ALL, env={"IPEX_RESNET_PRECISION": "fp32"}).precision == "fp32"
    assert (
        "env IPEX_RESNET_PRECISION"
        in make_plan(spr, availability=ALL, env={"IPEX_RESNET_PRECISION": "FP32"}).reasons["precision"]
    )
    # an explicit argument beats the env
    assert make_plan(spr, precision="bf16", availability=ALL, env={"IPEX_RESNET_PRECISION": "fp32"}).precision == "bf16"
    assert make_plan(spr, availability=ALL, env={"IPEX_RESNET_BACKEND": "eager"}).backend == "eager"
    assert make_plan(spr, availability=ALL, env={"IPEX_RESNET_THREADS": "3"}).threads == 3
    with pytest.raises(ConfigError, match="IPEX_RESNET_PRECISION='fp16'"):
        make_plan(spr, availability=ALL, env={"IPEX_RESNET_PRECISION": "fp16"})
    with pytest.raises(ConfigError, match="IPEX_RESNET_THREADS"):
        make_plan(spr, availability=ALL, env={"IPEX_RESNET_THREADS": "many"})
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        make_plan(spr, "tensorrt", availability=ALL, env={})


def test_auto_backend_falls_back_and_says_why():
    plan = make_plan(cpu("zen3_milan"), availability=NO_IPEX, env={})
    assert plan.backend == "inductor" and plan.options["freezing"] is True
    assert any("ipex not used" in n and "pip install" in n for n in plan.notes)
    only_eager = {**NO_IPEX, "inductor": (False, "needs a C++ compiler")}
    plan = make_plan(cpu("sapphire_rapids"), availability=only_eager, env={})
    assert plan.backend == "eager" and plan.precision == "fp32" and plan.memory_format == "contiguous"
    assert "eager is the FP32 reference" in plan.reasons["precision"]


def test_explicit_unavailable_backend_is_a_clear_error():
    with pytest.raises(BackendUnavailable, match="backend 'ipex' was requested.*pip install"):
        make_plan(cpu("sapphire_rapids"), "ipex", availability=NO_IPEX, env={})


def test_threads_per_socket_and_affinity():
    spr = make_plan(cpu("sapphire_rapids"), availability=ALL, env={})
    assert spr.threads == 2 and "one socket" in spr.reasons["threads"]  # 4 cores on 2 sockets
    cooper = make_plan(cpu("cooper_lake"), availability=ALL, env={})
    assert cooper.threads == 4 and "physical core" in cooper.reasons["threads"]  # SMT siblings not counted
    limited = make_plan(cpu("cooper_lake"), availability=ALL, env={}, affinity=1)
    assert limited.threads == 1 and "affinity" in limited.reasons["threads"]
    assert make_plan(cpu("cooper_lake"), threads=3, availability=ALL, env={}).threads == 3


def test_describe_and_dict_are_complete():
    plan = make_plan(cpu("zen4_genoa"), availability=NO_IPEX, env={})
    text = plan.describe()
    for key in ("backend:", "precision:", "memory_format:", "threads:", "note:"):
        assert key in text
    d = plan.to_dict()
    assert d["precision"] == "bf16" and d["native_bf16"] is True and d["isa_level"] == "avx512_core_bf16"
