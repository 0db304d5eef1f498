"""Intel Extension for PyTorch: channels-last, ipex.optimize, BF16 autocast, TorchScript trace + freeze,
saved as ``model.pt`` (frozen TorchScript; IPEX is imported before it is loaded).

IPEX 2.8 is the last CPU release and refuses any torch but 2.8.*; importing it against another torch
makes it print an error and exit the process, so :func:`status` reads the installed version from
package metadata and never imports a mismatched IPEX.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import tempfile
import warnings

from pathlib import Path

from ..errors import BackendUnavailable
from . import register
from ..quantization import quantize
from .base import Engine, dist_version, have, torch_runner

ARTIFACT = "model.pt"

DIST = "intel-extension-for-pytorch"
INSTALL_HINT = ("pip install 'torch==2.8.0' 'torchvision==0.23.0' 'intel-extension-for-pytorch==2.8.0' "
                "(or pip install 'ipex_resnet[ipex]')")


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def status() -> tuple[bool, str]:
    """From package metadata only: a mismatched IPEX is never imported (it would exit the process)."""
    if not have("intel_extension_for_pytorch"):
        return False, f"IPEX is not installed; for it: {INSTALL_HINT}"
    ipex_version = dist_version(DIST)
    if ipex_version is None:
        return False, f"intel_extension_for_pytorch is importable but has no package metadata; reinstall: {INSTALL_HINT}"
    torch_version = dist_version("torch") or "?"
    if _major_minor(ipex_version) != _major_minor(torch_version):
        return False, (f"IPEX {ipex_version} needs torch {'.'.join(_major_minor(ipex_version))}.*, "
                       f"found torch {torch_version}; {INSTALL_HINT}")
    return True, f"IPEX {ipex_version} matches torch {torch_version.split('+')[0]}"


@contextlib.contextmanager
def _silenced_stderr():
    """Swallow C++ and Python output to stderr (IPEX's kernel-override screen); replay it on error."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stderr(open(os.devnull, "w")) as devnull:
                warnings.simplefilter("ignore")
                try:
                    yield
                finally:
                    devnull.close()
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace")[-4000:])
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@functools.cache
def import_ipex():
    """Import IPEX quietly; raise BackendUnavailable (with the hint) when it cannot run here."""
    ok, why = status()
    if not ok:
        raise BackendUnavailable(why)
    import logging

    # IPEX imports torch._inductor, which forks a pool of compile workers (350-630 MB each) that an
    # IPEX runner never uses; one in-process compile thread instead, unless the user chose otherwise.
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    with _silenced_stderr():
        import intel_extension_for_pytorch as ipex
    logging.getLogger("intel_extension_for_pytorch").setLevel(logging.ERROR)
    return ipex


def isa_level() -> str | None:
    if not status()[0]:
        return None
    try:
        return str(import_ipex()._C._get_current_isa_level())
    except Exception:  # noqa: BLE001 - private API, report nothing rather than fail the probe
        return None


def _run_fn(traced, bf16: bool):
    import torch

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return traced(x).float()

    return run


@register
class IpexEngine(Engine):
    name = "ipex"
    extra = "ipex"
    warmup_iters = 3  # the profiling executor fuses on the first calls

    def status(self) -> tuple[bool, str]:
        return status()

    def precisions(self, cpu) -> tuple[str, ...]:
        return ("fp32", "bf16", "int8")

    def plan_options(self, precision, native_bf16):
        prepack = not (precision == "bf16" and not native_bf16)
        warnings_ = [] if prepack else [
            "IPEX BF16 weight prepacking needs native BF16 (AVX-512 kernels); "
            "weights_prepack was changed to False so the emulated path can run"]
        return {"jit": "trace+freeze", "weights_prepack": prepack}, warnings_

    def describe(self) -> str:
        return "ipex.optimize + TorchScript trace/freeze (oneDNN fusions)"

    def build(self, module, plan, example, out_dir, calibration=None) -> dict:
        import torch

        ipex = import_ipex()
        if plan.precision == "int8":
            return quantize(self.name, module, list(calibration or []), Path(out_dir), threads=plan.threads,
                                        example=example, bf16=plan.native_bf16)
        bf16 = plan.precision == "bf16"
        dtype = torch.bfloat16 if bf16 else torch.float32
        model = module.eval().to(memory_format=torch.channels_last)
        example = torch.as_tensor(example).float().contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IPEX warns about its own defaults at every call
            model = ipex.optimize(model, dtype=dtype, inplace=False,
                                  weights_prepack=bool(plan.options.get("weights_prepack", True)))
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
        torch.jit.save(traced, str(Path(out_dir) / ARTIFACT))
        return {"artifact": ARTIFACT}

    def load(self, out_dir, plan):
        import torch

        import_ipex()  # registers IPEX's ops before TorchScript resolves them
        traced = torch.jit.load(str(Path(out_dir) / ARTIFACT), map_location="cpu")
        return torch_runner(_run_fn(traced, plan.precision == "bf16"))
