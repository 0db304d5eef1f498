"""Intel Extension for PyTorch: channels-last, ipex.optimize, BF16 autocast, TorchScript trace + freeze.

IPEX 2.8 is the last CPU release and refuses any torch but 2.8.*; importing it against another torch
makes it print an error and exit the process, so :func:`status` reads the installed version from
package metadata and never imports a mismatched IPEX.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import sys
import tempfile
import warnings

import torch

from ..errors import BackendUnavailable

DIST = "intel-extension-for-pytorch"
INSTALL_HINT = ("pip install 'torch==2.8.0' 'torchvision==0.23.0' 'intel-extension-for-pytorch==2.8.0' "
                "(or pip install 'ipex_resnet[ipex]')")
WARMUP_ITERS = 3


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def status() -> tuple[bool, str]:
    if importlib.util.find_spec("intel_extension_for_pytorch") is None:
        return False, f"IPEX is not installed; for it: {INSTALL_HINT}"
    try:
        ipex_version = importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return False, f"intel_extension_for_pytorch is importable but has no package metadata; reinstall: {INSTALL_HINT}"
    if _major_minor(ipex_version) != _major_minor(torch.__version__):
        return False, (f"IPEX {ipex_version} needs torch {'.'.join(_major_minor(ipex_version))}.*, "
                       f"found torch {torch.__version__}; {INSTALL_HINT}")
    return True, f"IPEX {ipex_version} matches torch {torch.__version__.split('+')[0]}"


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


def prepare(model: torch.nn.Module, plan, example: torch.Tensor):
    ipex = import_ipex()
    bf16 = plan.precision == "bf16"
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = model.eval().to(memory_format=torch.channels_last)
    example = example.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IPEX warns about its own defaults at every call
        model = ipex.optimize(model, dtype=dtype, inplace=False,
                              weights_prepack=bool(plan.options.get("weights_prepack", True)))
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            traced = torch.jit.trace(model, example, check_trace=False)
            traced = torch.jit.freeze(traced)

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return traced(x).float()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IPEX's "JIT pass will be deprecated" notice on first run
        for _ in range(WARMUP_ITERS):  # the profiling executor fuses on the first calls
            run(example)
    return run
