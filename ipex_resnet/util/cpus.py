"""The CPUs this process may run on (its affinity mask), the count every thread default starts from."""

from __future__ import annotations

import os


def allowed_cpus() -> set[int] | None:
    """The logical CPUs in this process's affinity mask, or None where the OS has no such call."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def available_cores() -> int:
    """How many logical CPUs this process may use (the affinity mask, else the machine's count)."""
    cpus = allowed_cpus()
    return len(cpus) if cpus else (os.cpu_count() or 1)


__all__ = ["allowed_cpus", "available_cores"]
