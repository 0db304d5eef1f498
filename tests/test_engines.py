"""Every engine x precision that can run here matches the FP32 eager reference on real photos, through
the public API (and so through the artifact cache)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from conftest import FIXTURES, REPO, mismatched_ipex_env, require_backend

import ipex_resnet
from ipex_resnet.hardware.cpu import parse_cpuinfo

# FP32 paths reorder the same FP32 arithmetic (oneDNN blocking, fusions): measured 1e-6 relative L2.
FP32_REL_L2 = 1e-4
# BF16 keeps 8 mantissa bits (unit roundoff 2^-9 = 0.2%); activations and weights are rounded at every
# one of ResNet-18's ~20 layers and the errors add up roughly as a random walk, so ~1% is expected.
# Measured here: 0.9-1.0% relative L2 on native AVX512_BF16 (IPEX and Inductor) and emulated. 4% is
# ~4x that margin yet far below what a real fault gives (wrong layout/weights/inputs: >= 50%).
BF16_REL_L2 = 4e-2
BF16_MIN_MEAN_TOP5_OVERLAP = 4.5  # of 5, averaged over the photos
BF16_MIN_TOP1_AGREEMENT = 0.75

PATHS = [
    ("eager", "bf16"),
    ("ipex", "fp32"),
    ("ipex", "bf16"),
    ("inductor", "fp32"),
    ("inductor", "bf16"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("onnxruntime", "fp32"),
]


def require_precision(backend: str, precision: str) -> None:
    """Skip only what the hardware cannot do (OpenVINO runs BF16 only on native-BF16 CPUs)."""
    from ipex_resnet import engines, probe

    cpu = probe(check_torch=False)
    if precision not in engines.get(backend).precisions(cpu):
        pytest.skip(f"{backend} runs no {precision} on this CPU ({cpu.isa_level})")


def centered_rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Error relative to the image-dependent part of the logits (the shared bias is subtracted from
    the yardstick), so a path that ignored its input could not pass."""
    signal = ref - ref.mean(dim=0, keepdim=True)
    return float((out - ref).norm() / signal.norm())


def top5_overlap(out: torch.Tensor, ref: torch.Tensor) -> float:
    sets = [(set(a.topk(5).indices.tolist()), set(r.topk(5).indices.tolist())) for a, r in zip(out, ref)]
    return sum(len(a & r) for a, r in sets) / len(sets)


def test_reference_logits_depend_on_the_image(reference_logits):
    # The yardstick itself must be meaningful: distinct images give distinct predictions.
    assert len(set(reference_logits.argmax(1).tolist())) >= 4
    # and the metric flags a path that mixes up images in a batch
    assert centered_rel_l2(reference_logits.roll(1, dims=0), reference_logits) > 1.0


@pytest.mark.slow
@pytest.mark.parametrize("backend,precision", PATHS, ids=[f"{b}-{p}" for b, p in PATHS])
def test_backend_matches_eager_fp32(backend, precision, checkpoint, agreement_batch, reference_logits):
    require_backend(backend)
    require_precision(backend, precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ipex_resnet.PlanWarning)  # emulated BF16 warns on CPUs without it
        clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend=backend, precision=precision)
    assert (clf.plan.backend, clf.plan.precision) == (backend, precision)
    out = clf(agreement_batch)
    assert out.dtype == torch.float32 and out.shape == reference_logits.shape
    err = centered_rel_l2(out, reference_logits)
    if precision == "fp32":
        assert err < FP32_REL_L2, f"{backend} fp32 relative L2 {err:.2e}"
        assert torch.equal(out.argmax(1), reference_logits.argmax(1))
    else:
        assert err < BF16_REL_L2, f"{backend} bf16 relative L2 {err:.2e}"
        assert top5_overlap(out, reference_logits) >= BF16_MIN_MEAN_TOP5_OVERLAP
        agree = (out.argmax(1) == reference_logits.argmax(1)).float().mean().item()
        assert agree >= BF16_MIN_TOP1_AGREEMENT
    # other batch sizes work too (the runner is not specialised to the warm-up shape)
    single = clf(agreement_batch[:1])
    signal = (reference_logits[:1] - reference_logits.mean(0, keepdim=True)).norm()
    tol = FP32_REL_L2 if precision == "fp32" else BF16_REL_L2
    assert float((single - reference_logits[:1]).norm() / signal) < 2 * tol


@pytest.mark.slow
def test_ipex_emulated_bf16_on_a_cpu_without_it(checkpoint, agreement_batch, reference_logits):
    """Explicit bf16 on an AVX-512 CPU without native BF16 (Ice Lake fixture): the plan turns weight
    prepacking off, warns, and the emulated IPEX path still matches the reference. The emulation runs
    on this machine's AVX-512, so it needs that here; on an AVX2-only CPU IPEX runs no BF16 at all."""
    require_backend("ipex")
    require_precision("ipex", "bf16")
    ice = parse_cpuinfo((FIXTURES / "cpus" / "ice_lake.cpuinfo").read_text())
    assert ice.has_avx512_core and not ice.has_native_bf16
    with pytest.warns(ipex_resnet.PlanWarning, match="no native BF16"):
        clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="ipex", precision="bf16", cpu=ice)
    assert clf.plan.options["weights_prepack"] is False and clf.plan.emulated_bf16
    out = clf(agreement_batch)
    assert centered_rel_l2(out, reference_logits) < BF16_REL_L2
    assert top5_overlap(out, reference_logits) >= BF16_MIN_MEAN_TOP5_OVERLAP


@pytest.mark.slow
def test_ipex_import_noise_is_silenced():
    require_backend("ipex")
    code = (
        "import ipex_resnet, torch; "
        "c = ipex_resnet.load('resnet18', weights='none', backend='ipex', precision='fp32'); "
        "print(c(torch.randn(1, 3, 224, 224)).shape)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch.Size([1, 1000])" in proc.stdout
    for noise in (
        "Overriding a previously registered kernel",
        "OperatorEntry",
        "JIT pass will be deprecated",
        "No CUDA runtime",
    ):
        assert noise not in proc.stderr, proc.stderr[-2000:]


def test_auto_never_imports_a_mismatched_ipex(tmp_path):
    """An IPEX built for another torch exits the process on import. With one first on the path (an
    IPEX 2.7.0 whose import exits as the real one does), the auto plan reads its metadata only,
    passes it over with the reason, and never imports it: on every stack."""
    code = (
        "import sys, ipex_resnet; p = ipex_resnet.plan_for(); "
        "print(p.backend, 'intel_extension_for_pytorch' in sys.modules); print(*p.notes, sep='\\n')"
    )
    env = mismatched_ipex_env(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, *notes = proc.stdout.splitlines()
    backend, imported = first.split()
    assert backend != "ipex" and imported == "False"
    assert any("ipex not used: IPEX 2.7.0 needs torch 2.7.*" in n and "pip install" in n for n in notes)


def test_openvino_pins_threads_only_when_they_cover_the_cpu_mask():
    """Two 1-thread OpenVINO processes (Ray actors) must not both be pinned to the first core."""
    import os

    from ipex_resnet.engines.openvino import compile_config

    mask = len(os.sched_getaffinity(0))
    assert compile_config(mask, "fp32")["ENABLE_CPU_PINNING"] is True
    assert compile_config(mask, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    if mask > 1:
        assert compile_config(mask - 1, "fp32")["ENABLE_CPU_PINNING"] is False
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from ipex_resnet.engines.openvino import compile_config; "
        "print(compile_config(1, 'fp32')['ENABLE_CPU_PINNING'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.stdout.strip() == "True"  # a worker given its own core keeps its pinning
