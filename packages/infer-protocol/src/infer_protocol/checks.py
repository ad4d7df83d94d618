"""Strict attrs converters and validators for protocol fields, and `structure`.

Imports run one way: messages and codec use this module, it uses neither.
Every converter either returns a value of the declared type or raises
TypeError/ValueError; the codec turns those into ProtocolError. Booleans are
never accepted where integers belong, and floats must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs


def _type_name(value: Any) -> str:
    return type(value).__name__


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_type_name(value)}")
    return value


def to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {_type_name(value)}")
    return value


def to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_type_name(value)}")
    return value


def to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_type_name(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Let None through, convert anything else."""

    def run(value: Any) -> Any:
        return None if value is None else convert(value)

    return run


def list_of(convert: Callable[[Any], Any]) -> Callable[[Any], list]:
    """Convert a list (or tuple) element by element into a new list."""

    def run(value: Any) -> list:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_type_name(value)}")
        return [convert(item) for item in value]

    return run


def pair_of(first: Callable[[Any], Any], second: Callable[[Any], Any]) -> Callable[[Any], tuple]:
    """Convert a two-element list into a tuple."""

    def run(value: Any) -> tuple:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise TypeError("expected a pair")
        return (first(value[0]), second(value[1]))

    return run


def int_float_map(value: Any) -> dict[int, float]:
    """A map of token id to a finite number (logit_bias)."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a map, got {_type_name(value)}")
    out: dict[int, float] = {}
    for key, item in value.items():
        out[to_int(key)] = to_float(item)
    return out


def nested(cls: type) -> Callable[[Any], Any]:
    """Accept an instance of an attrs class or the map of its fields."""

    def run(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"expected a {cls.__name__} map, got {_type_name(value)}")
        return structure(cls, value)

    return run


def at_least(low: float) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attr: Any, value: Any) -> None:
        if value is not None and value < low:
            raise ValueError(f"{attr.name} must be >= {low}, got {value}")

    return check


def between(low: float, high: float) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attr: Any, value: Any) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"{attr.name} must be in [{low}, {high}], got {value}")

    return check


def each_at_least(low: int) -> Callable[[Any, Any, Any], None]:
    def check(_inst: Any, attr: Any, value: Any) -> None:
        for item in value:
            if item < low:
                raise ValueError(f"{attr.name} items must be >= {low}, got {item}")

    return check


def not_empty(_inst: Any, attr: Any, value: Any) -> None:
    if len(value) == 0:
        raise ValueError(f"{attr.name} must not be empty")


def structure(cls: type, data: dict) -> Any:
    """Build an attrs instance from a field map, rejecting missing or extra fields."""
    names = {f.name for f in attrs.fields(cls)}
    extra = set(data) - names
    if extra:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(map(str, extra))}")
    required = {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING}
    missing = required - set(data)
    if missing:
        raise ValueError(f"{cls.__name__}: missing fields {sorted(missing)}")
    return cls(**data)
