"""The engine registry: one module per engine, each registering one :class:`Engine` subclass.

    from ipex_resnet import engines
    engines.names()                 # ('ipex', 'inductor', 'openvino', 'onnxruntime', 'eager')
    engines.get("openvino").status()
    engines.availability()          # {name: (available, reason or install hint)}

Importing the registry imports no engine library (torch included): each engine imports what it
needs inside its methods, so a cached OpenVINO or ONNX Runtime artifact runs without torch.
"""

from __future__ import annotations

import importlib

from ipex_resnet.engines.base import PRECISIONS, Engine, Runner
from ipex_resnet.errors import ConfigError

REGISTRY: dict[str, Engine] = {}

# Engine modules, in the order the static rule prefers them when nothing was measured.
_MODULES = ("ipex", "inductor", "openvino", "onnxruntime", "eager")


def register(cls: type[Engine]) -> type[Engine]:
    """Class decorator: instantiate and register an engine under ``cls.name``."""
    if cls.name in REGISTRY:
        raise ValueError(f"engine {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


def _ensure_loaded() -> None:
    if len(REGISTRY) < len(_MODULES):
        for mod in _MODULES:
            importlib.import_module(f"{__name__}.{mod}")


def names() -> tuple[str, ...]:
    _ensure_loaded()
    return tuple(m for m in _MODULES if m in REGISTRY)


def get(name: str) -> Engine:
    _ensure_loaded()
    try:
        return REGISTRY[str(name).lower()]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}: choose one of auto, {', '.join(names())}") from None


def availability() -> dict[str, tuple[bool, str]]:
    """(available, reason or install hint) for every engine; cheap, imports no engine library."""
    return {name: get(name).status() for name in names()}


__all__ = ["Engine", "PRECISIONS", "REGISTRY", "Runner", "availability", "get", "names", "register"]
