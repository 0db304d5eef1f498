"""Machine identity: library versions, thread settings and the key that separates baselines and
labels reports (CPU model + ISA level + torch/IPEX versions + threads)."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping

from ipex_resnet.util.deps import dist_version

DISTS = {
    "torch": "torch",
    "torchvision": "torchvision",
    "intel_extension_for_pytorch": "intel-extension-for-pytorch",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "nncf": "nncf",
    "torchao": "torchao",
}


def versions() -> dict[str, str | None]:
    from ipex_resnet.util.version import __version__

    out: dict[str, str | None] = {"python": platform.python_version()}
    out.update({k: dist_version(d) for k, d in DISTS.items()})
    out["ipex_resnet"] = __version__
    return out


def thread_settings() -> dict[str, object]:
    import sys

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    out: dict[str, object] = {"affinity_cpus": affinity}
    if "torch" in sys.modules:
        import torch

        out["torch_num_threads"] = torch.get_num_threads()
        out["torch_num_interop_threads"] = torch.get_num_interop_threads()
    out["env"] = {
        k: os.environ[k]
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_AFFINITY", "IPEX_RESNET_THREADS", "OMP_PROC_BIND")
        if k in os.environ
    }
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "unknown"


def machine_key(cpu, vers: Mapping[str, str | None] | None = None, threads: int | None = None) -> str:
    """A filesystem-safe key: CPU model + ISA level + torch/IPEX versions (+ threads).

    Baselines are stored per key so two SKUs (or two stacks) never overwrite or judge each other.
    """
    vers = versions() if vers is None else vers
    parts = [_slug(cpu.model_name), cpu.isa_level, "torch" + str(vers.get("torch") or "?").split("+")[0]]
    ipex = vers.get("intel_extension_for_pytorch")
    parts.append("ipex" + ipex.split("+")[0] if ipex else "noipex")
    if threads:
        parts.append(f"t{threads}")
    return "_".join(parts)


__all__ = ["machine_key", "thread_settings", "versions"]
