"""Checks of configuration values: each raises `ConfigurationError` naming the value."""

from __future__ import annotations

import enum
import math
from typing import TypeVar

from ._errors import ConfigurationError

E = TypeVar("E", bound=enum.Enum)


def require_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """Return ``value`` as float seconds, or raise `ConfigurationError` naming it.

    It must be a finite number (not a bool), >= 0, or > 0 with ``positive``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be seconds {bound}, got {value!r}")
    return float(value)


def require_int(name: str, value: object, minimum: int, where: str = "") -> None:
    """Raise `ConfigurationError` unless ``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{where}{name} must be an int >= {minimum}, got {value!r}")


def require_timeout(timeout: float | None) -> None:
    """Raise a clear error unless ``timeout`` is None or seconds > 0."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigurationError(f"timeout must be seconds > 0 or None, got {timeout!r}")


def coerce_enum(enum_cls: type[E], value: object, what: str) -> E:
    """Accept an enum member or its string value; otherwise raise a clear error."""
    if isinstance(value, enum_cls):
        return value
    for member in enum_cls:
        if value == member.value:
            return member
    valid = ", ".join(repr(m.value) for m in enum_cls)
    raise ConfigurationError(
        f"{what} must be one of {valid} (or {enum_cls.__name__}.*), got {value!r}"
    )
