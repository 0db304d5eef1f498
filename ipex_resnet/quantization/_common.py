"""Small helpers shared by the per-engine quantization flows."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ipex_resnet.errors import ConfigError


def check_calibration(calibration: Sequence[Any]) -> list[np.ndarray]:
    """The calibration batches as float32 NCHW arrays; a clear error when there are none."""
    batches = [np.ascontiguousarray(np.asarray(b, dtype=np.float32)) for b in (calibration or [])]
    batches = [b[None] if b.ndim == 3 else b for b in batches]
    if not batches or sum(len(b) for b in batches) == 0:
        raise ConfigError(
            "INT8 needs calibration images: pass calibration='DIR' (a folder of images) "
            "or a list of images (or --calibration DIR on the command line)"
        )
    for b in batches:
        if b.ndim != 4 or b.shape[1] != 3:
            raise ConfigError(f"calibration batches must be Nx3xHxW float arrays, got shape {b.shape}")
    return batches


def images(batches: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """One 1x3xHxW array per calibration image (the unit NNCF and ORT calibrate on)."""
    for b in batches:
        for i in range(len(b)):
            yield b[i : i + 1]


def count(batches: Sequence[np.ndarray]) -> int:
    return int(sum(len(b) for b in batches))


def check_keep_float(module, keep_float: Sequence[str] | str | None) -> list[str]:
    """``keep_float`` as a de-duplicated list of submodule names of ``module`` (names as in
    ``module.named_modules()``, e.g. ``"layer1.0.conv2"``); a clear error for a name it has not."""
    if not keep_float:
        return []
    if isinstance(keep_float, str):
        keep_float = [keep_float]
    names = list(dict.fromkeys(str(n) for n in keep_float))
    known = {n for n, _ in module.named_modules() if n}
    unknown = [n for n in names if n not in known]
    if unknown:
        layers = [
            n
            for n, m in module.named_modules()
            if n and getattr(m, "weight", None) is not None and next(m.children(), None) is None
        ]
        raise ConfigError(
            f"keep_float names no submodule of the model: {', '.join(map(repr, unknown))}; "
            f"names are as in module.named_modules(), e.g. {', '.join(layers[:4])}"
        )
    return names


def module_names(module) -> frozenset[str]:
    return frozenset(n for n, _ in module.named_modules() if n)


def inside(name: str, parent: str) -> bool:
    """Whether submodule ``name`` is ``parent`` or lies under it (``layer1.0.conv2`` in ``layer1``)."""
    return name == parent or name.startswith(parent + ".")


def scope_owner(node_name: str, known: Collection[str]) -> str | None:
    """The deepest submodule (a name of ``known``) that an exported graph node belongs to, read from
    the node's ``/``-separated scope name, or None.

    torch.onnx's TorchScript exporter names nodes by module scope -- ``/conv1/Conv``,
    ``/layer1/layer1.0/conv2/Conv``, ``/layer2/layer2.0/downsample/downsample.0/Conv`` (a container's
    child is named ``parent.index``) -- and OpenVINO's ONNX frontend keeps those names for the ops it
    makes (``/layer1/layer1.0/conv2/Conv/WithoutBiases``). Each scope is read as a child's local
    name, as ``parent-local-name.child`` or as a full name, whichever names a real submodule; the
    walk stops at the first part that is none (the op's own name)."""
    cur = ""
    for comp in (c for c in node_name.split("/") if c):
        candidates = []
        if cur:
            candidates.append(f"{cur}.{comp}")
            parent, _, last = cur.rpartition(".")
            if comp.startswith(last + "."):
                candidates.append(f"{parent}.{comp}" if parent else comp)
        if not cur or comp.startswith(cur + "."):
            candidates.append(comp)
        nxt = next((c for c in candidates if c in known), None)
        if nxt is None:
            break
        cur = nxt
    return cur or None


def owned_by(node_names: Iterable[str], keep: Sequence[str], known: Collection[str]) -> dict[str, list[str]]:
    """``{kept module: [graph node names in its scope]}`` (modules with no node are left out).
    ``known`` is every submodule name of the model; when empty, the kept names and their parents."""
    if not known:
        known = {".".join(k.split(".")[:i]) for k in keep for i in range(1, k.count(".") + 2)}
    out: dict[str, list[str]] = {}
    for node in node_names:
        owner = scope_owner(node, known)
        if owner is None:
            continue
        for k in keep:
            if inside(owner, k):
                out.setdefault(k, []).append(node)
    return {k: out[k] for k in keep if k in out}


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run torch with ``threads`` intra-op threads, restoring the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reduced_range_here() -> bool:
    """True on a CPU without VNNI or AMX-INT8. There oneDNN's and ONNX Runtime's u8*s8 kernels
    (``vpmaddubsw``) add pairs of products in saturating int16, so one 8-bit operand gets 7 bits, as
    both tools advise ("reduce_range ... on earlier CPUs without VNNI", X86InductorQuantizer;
    "reduce_range ... non-VNNI machine", ONNX Runtime's quantization guide). Measured on an AVX2-only
    EPYC, EfficientNet-Lite1: Inductor and ONNX Runtime INT8 then pass the 1-point gate without the
    layer fallback (docs/accuracy.md)."""
    from ipex_resnet.hardware.cpu import probe

    return probe(check_torch=False).int8_dot_isa is None
