"""What identifies a compiled artifact: the model, its weights (hashed, never trusted by name alone
when they are the user's), the engine, precision, ISA level and every library version involved."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ipex_resnet import engines
from ipex_resnet.core.digests import file_digests
from ipex_resnet.core.policy import Plan
from ipex_resnet.errors import WeightsError
from ipex_resnet.hardware.cpu import probe
from ipex_resnet.models.spec import source_id
from ipex_resnet.models.weights import NO_WEIGHTS, looks_like_path
from ipex_resnet.util.deps import dist_version
from ipex_resnet.util.version import __version__


def weights_id(model, weights, model_id: str | None = None) -> str:
    """What identifies the weights, without loading them: a file hash, a torchvision enum name, a
    user module's parameter hash, the version a user's model declares (``model_id``, with the hash of
    any checkpoint given with it), or the seeded random init."""
    if model_id is not None:
        return f"declared:{model_id}" + (f"+{_checkpoint_id(os.fspath(weights))}" if _checkpoint_given(weights) else "")
    if not isinstance(model, str):
        import torch

        h = hashlib.sha256(source_id(model).encode())  # the class and the file that defines its forward
        for k, v in model.state_dict().items():
            h.update(k.encode() + b"\0")
            if isinstance(v, torch.Tensor):
                # dtype and shape first: the same bytes as another dtype or shape are other weights.
                # reshape(-1) lets 0-dim buffers (BatchNorm's num_batches_tracked) view as bytes.
                h.update(f"{v.dtype}{tuple(v.shape)}".encode())
                flat = v.detach().cpu().contiguous().reshape(-1)
                h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
            else:  # extra state (get_extra_state) of any picklable kind
                h.update(repr(v).encode())
        if _checkpoint_given(weights):
            h.update(_checkpoint_id(os.fspath(weights)).encode())  # load() applies it to the module
        return "module:" + h.hexdigest()[:32]
    spec = "none" if weights is None else os.fspath(weights)
    if spec.lower() in NO_WEIGHTS:
        return "random-init:seed0"
    if looks_like_path(spec):
        return _checkpoint_id(spec)
    return "torchvision:" + spec.upper()


def _checkpoint_given(weights) -> bool:
    """A user model's ``weights``: a checkpoint path, rather than its own (``DEFAULT``) or none."""
    return weights is not None and str(weights).lower() not in ("default", *NO_WEIGHTS)


def _checkpoint_id(spec: str) -> str:
    p = Path(spec)
    if not p.is_file():
        raise WeightsError(f"checkpoint {spec!r} not found")
    with file_digests() as digest:  # a large checkpoint is read once per change, not once per load
        return "sha256:" + digest(p)


def artifact_key(
    model_name: str, wid: str, plan: Plan, calibration_id: str | None = None, transforms_id: str | None = None
) -> dict:
    engine = engines.get(plan.backend)
    libs = {d: dist_version(d) for d in ("torch", "torchvision", "onnx")}
    for dist in {
        "ipex": ("intel-extension-for-pytorch",),
        "openvino": ("openvino", "nncf"),
        "onnxruntime": ("onnxruntime",),
        "inductor": ("torchao",),
    }.get(engine.name, ()):
        libs[dist] = dist_version(dist)
    key: dict[str, Any] = {
        "model": model_name,
        "weights": wid,
        "engine": engine.name,
        "precision": plan.precision,
        "isa": plan.isa_level,
        "versions": {"ipex_resnet": __version__, **libs},
    }
    if plan.precision == "int8":  # the quantization recipe follows the CPU's int8 dot product (VNNI or not)
        key["int8_isa"] = probe(check_torch=False).int8_dot_isa
    if engine.name == "ipex":
        key["weights_prepack"] = plan.options.get("weights_prepack")
    if calibration_id:
        key["calibration"] = calibration_id
    if transforms_id:
        key["transforms"] = transforms_id
    return key


__all__ = ["artifact_key", "weights_id"]
