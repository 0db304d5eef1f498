"""An option declared once: its help, default, type and limits (:class:`Param`), checked the same way
for every front end (``ipex-resnet serve``'s :class:`~ipex_resnet.serve.config.ServeConfig` fields,
``ipex-resnet bench``'s and the bench suites' table), with one line of :class:`ConfigError` for a bad
value, and its help text showing the default it was declared with."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from ipex_resnet.errors import ConfigError

PARAM = "param"  # the metadata key of a dataclass field declared with :func:`param_field`


@dataclasses.dataclass(frozen=True)
class Param:
    """``type``: int or float checks a number (None: the default's type); ``minimum``/``maximum``:
    inclusive bounds; ``positive``: above 0 and finite; ``unit``: what the number counts, for the
    message ("a positive number of seconds"); ``choices``: the values allowed."""

    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    unit: str = ""
    choices: tuple[str, ...] | None = None

    @property
    def value_type(self) -> Callable[[str], Any] | None:
        """What a value is parsed as: ``type``, else the default's (None: neither is known)."""
        if self.type is not None:
            return self.type
        return None if self.default is None else type(self.default)

    @property
    def numeric(self) -> bool:
        return self.value_type in (int, float)

    def rule(self) -> str:
        """What a good value is, as the end of "--flag must be ..."."""
        noun = ("a whole number" if self.value_type is int else "a number") + (f" of {self.unit}" if self.unit else "")
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None:
            return f"{noun} from {lo:g} to {hi:g}"
        if self.positive:
            return "a positive " + noun.removeprefix("a ")
        if lo == 0:
            return "0 or more"
        if lo is not None:
            return f"at least {lo:g}"
        if hi is not None:
            return f"at most {hi:g}"
        return noun

    def check(self, flag: str, value: Any) -> Any:
        """``value`` as its type (a string is parsed), or ConfigError naming ``flag``, the rule and the value.
        None (not given) passes."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if not self.numeric:
            return value
        number = self._number(flag, value)
        lo, hi = self.minimum, self.maximum
        ok = (lo is None or number >= lo) and (hi is None or number <= hi) and not math.isnan(number)
        if not ok or self.positive and not (number > 0 and math.isfinite(number)):
            raise ConfigError(f"{flag} must be {self.rule()}, got {shown(number)}")
        return number

    def _number(self, flag: str, value: Any) -> int | float:
        whole = self.value_type is int
        rule = self.rule()
        wanted = rule if "number" in rule else "a whole number" if whole else "a number"
        if isinstance(value, str):
            try:
                value = int(value) if whole else float(value)
            except ValueError:
                raise ConfigError(f"{flag} must be {wanted}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise ConfigError(f"{flag} must be {wanted}, got {value!r}")
        return value if whole else float(value)

    def help_text(self, default: Any = None, extra: str = "") -> str:
        """The help with the default shown (``default``: another than the declared one; ``extra``: more
        inside the brackets, e.g. "; --quick: 4")."""
        value = self.default if default is None else default
        return self.help if value is None else f"{self.help} (default: {shown(value)}{extra})"


def shown(value: Any) -> str:
    """A default as help text shows it: a float by :g (15, 0.025), anything else as it prints."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def param_field(param: Param, **metadata: Any) -> Any:
    """A dataclass field declared by ``param`` (its default), with more ``metadata`` for the front end."""
    return dataclasses.field(default=param.default, metadata={PARAM: param, **metadata})


def param_of(f: dataclasses.Field) -> Param:
    return f.metadata[PARAM]


def check_fields(obj: Any, flag: Callable[[dataclasses.Field], str]) -> None:
    """Check every :func:`param_field` of the dataclass instance ``obj`` in place (a number is stored as
    its type); ConfigError names the first bad one by ``flag(field)``."""
    for f in dataclasses.fields(obj):
        if PARAM in f.metadata:
            setattr(obj, f.name, param_of(f).check(flag(f), getattr(obj, f.name)))


__all__ = ["PARAM", "Param", "check_fields", "param_field", "param_of", "shown"]
