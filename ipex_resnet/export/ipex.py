"""Importing IPEX safely, shared by the IPEX engine and its INT8 flow.

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

from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.util.deps import dist_version, installed

DIST = "intel-extension-for-pytorch"
INSTALL_HINT = (
    "pip install 'torch==2.8.0' 'torchvision==0.23.0' 'intel-extension-for-pytorch==2.8.0' "
    "(or pip install 'ipex_resnet[ipex]')"
)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def status() -> tuple[bool, str]:
    """From package metadata only: a mismatched IPEX is never imported (it would exit the process)."""
    if not installed("intel_extension_for_pytorch"):
        return False, f"IPEX is not installed; for it: {INSTALL_HINT}"
    ipex_version = dist_version(DIST)
    if ipex_version is None:
        return (
            False,
            f"intel_extension_for_pytorch is importable but has no package metadata; reinstall: {INSTALL_HINT}",
        )
    torch_version = dist_version("torch") or "?"
    if _major_minor(ipex_version) != _major_minor(torch_version):
        return False, (
            f"IPEX {ipex_version} needs torch {'.'.join(_major_minor(ipex_version))}.*, "
            f"found torch {torch_version}; {INSTALL_HINT}"
        )
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
    except Exception:
        return None


__all__ = ["DIST", "INSTALL_HINT", "import_ipex", "isa_level", "status"]
