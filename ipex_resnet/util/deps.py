"""Which optional packages are installed and at what version, without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from pathlib import Path


def dist_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (pip name), or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed(module: str) -> bool:
    """True when ``module`` (dotted names included) can be imported. Imports nothing: a submodule is
    looked up as a file under its top-level package (importing a parent can take seconds and print
    warnings, as torchao's does)."""
    if module in sys.modules:
        return True
    top, _, rest = module.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if not rest:
        return True
    parts = rest.split(".")
    for location in spec.submodule_search_locations or ():
        base = Path(location).joinpath(*parts[:-1])
        leaf = parts[-1]
        if (
            (base / leaf / "__init__.py").is_file()
            or (base / f"{leaf}.py").is_file()
            or any(base.glob(f"{leaf}.*.so"))
            or (base / leaf).is_dir()
        ):
            return True
    return False


def require(module: str, need: str):
    """Import ``module`` (dotted names too) and return it, or raise a :class:`ConfigError` that says
    ``need`` (what needs it and how to install it) and why the import failed."""
    import importlib

    from ipex_resnet.errors import ConfigError

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{need} ({exc})") from None


def first_missing(*modules: str) -> str | None:
    """The first of ``modules`` that is not installed, or None."""
    return next((m for m in modules if not installed(m)), None)


__all__ = ["dist_version", "first_missing", "installed", "require"]
