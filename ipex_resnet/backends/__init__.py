"""Backends: one module each, behind one small interface.

Each backend module defines

* ``status() -> (available: bool, reason: str)`` -- cheap; never imports a mismatched IPEX;
* ``prepare(model, plan, example) -> Callable[[Tensor], Tensor]`` -- returns a runner that maps an
  NCHW float32 batch to float32 logits, already warmed up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

from ..policy import BACKENDS

Runner = Callable[[torch.Tensor], torch.Tensor]


def module(name: str):
    if name not in BACKENDS:
        raise KeyError(name)
    return importlib.import_module(f"{__name__}.{name}")


def availability() -> dict[str, tuple[bool, str]]:
    """(available, reason) for every backend, for :func:`ipex_resnet.policy.make_plan`."""
    return {name: module(name).status() for name in BACKENDS}


def prepare(model: torch.nn.Module, plan, example: torch.Tensor) -> Runner:
    return module(plan.backend).prepare(model, plan, example)


def ipex_isa() -> str | None:
    """IPEX's own view of the ISA level, when IPEX is importable and matches torch."""
    from . import ipex

    return ipex.isa_level()
