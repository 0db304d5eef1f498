"""Errors a user can act on. The CLI prints them as one line; everything else is a bug."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """An exception as one line for a report or a message: its first line, else its type's name."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class IpexResnetError(Exception):
    """Base class: the message says what is wrong and what to do."""


class ConfigError(IpexResnetError, ValueError):
    """A bad option: unknown backend, precision, model name, env override..."""


class BackendUnavailable(IpexResnetError):
    """An explicitly requested backend cannot run here (the message carries the install hint)."""


class WeightsError(IpexResnetError):
    """Weights could not be found, downloaded or loaded."""


class ImageError(IpexResnetError, ValueError):
    """One input could not be read as an image. ``source`` names the input; ``code`` is a stable
    machine-readable kind (``bad_image``, ``truncated_image``) for services."""

    def __init__(self, source: str, problem: str, code: str = "bad_image"):
        self.source = source
        self.problem = problem
        self.code = code
        super().__init__(f"{source}: {problem}")


class AccuracyGateError(IpexResnetError):
    """A quantized model misses its accuracy gate (the message has the numbers, the gate and the
    override). ``agreement`` and ``gate`` carry them as data."""

    def __init__(self, message: str, agreement: object = None, gate: object = None) -> None:
        super().__init__(message)
        self.agreement = agreement
        self.gate = gate
