"""Import torchvision without torch._dynamo.

torchvision's ``ops/roi_align.py`` (imported by ``import torchvision``, through its models) does
``from torch._dynamo.utils import is_compile_supported`` at import time, which imports TorchDynamo, sympy
and the FX symbolic-shape machinery: 1.8 s of a 4.5 s cold start of the eager path on a 2-core EPYC, for
a function that roi_align calls only when it runs. :func:`import_torchvision` imports torchvision with a
stand-in for that one name in place, which imports the real one on its first call, and removes the
stand-in as soon as torchvision is imported; anything that needs TorchDynamo later (torch.compile,
Inductor's build) imports the real package as usual. Where that does not hold (a torchvision that reads
more of TorchDynamo at import time, or TorchDynamo already imported), torchvision is imported the plain way.

Threads: the stand-in sits in ``sys.modules`` for the length of torchvision's import (about 0.3 s, once per
process). Callers of this function may race (the import system's own module locks order them); another
thread that imports ``torch._dynamo`` itself inside that window would get the stand-in. Nothing in this
package does that while torchvision is first imported; a program that starts torch.compile in one thread
while it first loads an eager model in another should import torchvision first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_STANDS_IN = ("torch._dynamo", "torch._dynamo.utils")


def _is_compile_supported(device_type: Any) -> Any:
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


def import_torchvision() -> types.ModuleType:
    """``torchvision``, imported without importing torch._dynamo when it was not imported yet."""
    if "torchvision" in sys.modules or "torch._dynamo" in sys.modules:
        return importlib.import_module("torchvision")
    import torch  # noqa: F401 - torch itself first, as torchvision imports it

    utils = types.ModuleType("torch._dynamo.utils")
    utils.is_compile_supported = _is_compile_supported  # type: ignore[attr-defined]
    package = types.ModuleType("torch._dynamo")
    package.__path__ = []  # a package, so that its submodule resolves from sys.modules
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules.update({"torch._dynamo": package, "torch._dynamo.utils": utils})
    try:
        return importlib.import_module("torchvision")
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # a half-imported torchvision: start again without the stand-in
        _remove(package, utils)
        return importlib.import_module("torchvision")
    finally:
        _remove(package, utils)


def _remove(package: types.ModuleType, utils: types.ModuleType) -> None:
    for name, module in zip(_STANDS_IN, (package, utils)):
        if sys.modules.get(name) is module:
            del sys.modules[name]


__all__ = ["import_torchvision"]
