"""Small helpers shared by the per-engine quantization flows."""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def missing(*modules: str) -> str | None:
    """The first of ``modules`` that is not installed, or None (cheap: imports nothing)."""
    import importlib.util

    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                return m
        except (ImportError, ValueError):
            return m
    return None


def check_calibration(calibration: Sequence[Any]) -> list[np.ndarray]:
    """The calibration batches as float32 NCHW arrays; a clear error when there are none."""
    batches = [np.ascontiguousarray(np.asarray(b, dtype=np.float32)) for b in (calibration or [])]
    batches = [b[None] if b.ndim == 3 else b for b in batches]
    if not batches or sum(len(b) for b in batches) == 0:
        raise ConfigError("INT8 needs calibration images: pass calibration='DIR' (a folder of images) "
                          "or a list of images (or --calibration DIR on the command line)")
    for b in batches:
        if b.ndim != 4 or b.shape[1] != 3:
            raise ConfigError(f"calibration batches must be Nx3xHxW float arrays, got shape {b.shape}")
    return batches


def images(batches: Sequence[np.ndarray]) -> Iterator[np.ndarray]:
    """One 1x3xHxW array per calibration image (the unit NNCF and ORT calibrate on)."""
    for b in batches:
        for i in range(len(b)):
            yield b[i:i + 1]


def count(batches: Sequence[np.ndarray]) -> int:
    return int(sum(len(b) for b in batches))


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
