"""Type checks of configuration values read from YAML or JSON against their dataclass fields.

Why our own: a `config.json` or recipe is user input, and dataclasses do not check types, so `max_steps: 1.5`
or `"hidden_size": "256"` would surface later as a traceback deep in training or loading. This covers the
few annotation forms our configs use (int, float, bool, str, None, unions, tuples, lists, dicts, dataclasses).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from typing import Any

from .errors import ConfigError


def is_number(value: Any, integer: bool = False) -> bool:
    """An int or float (with `integer`, an int) that is not a bool or NaN. numpy scalars count, so that values
    from a numpy sweep pass the API's checks like Python's own; Fraction and Decimal do not (torch takes neither)."""
    kind: tuple[type, ...] = (int,) if integer else (int, float)  # not Fraction or Decimal
    np = sys.modules.get("numpy")  # a numpy scalar implies numpy is loaded; importing it here cost 0.18 s of `--help`
    if np is not None:
        kind += (np.integer,) if integer else (np.integer, np.floating)
    return isinstance(value, kind) and not isinstance(value, bool) and value == value


def check_field_types(cls: type, data: dict, what: str, prefix: str = "") -> None:
    """Raise a ConfigError naming the first value of `data` (`what`, e.g. "recipe") that does not match its
    field's type in dataclass `cls`, as `<prefix><field>` or `<what>: <field>`; keys that are not fields are
    left to the caller. Floats must be finite."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data and not _matches(hints[f.name], data[f.name]):
            where = prefix or f"{what}: "
            raise ConfigError(f"{where}{f.name} must be {_describe(hints[f.name])}, got {data[f.name]!r}"
                              f"{_yaml_hint(data[f.name])}")


def _yaml_hint(value: Any) -> str:
    """YAML 1.1 (PyYAML) reads `1e-4` as a string: it wants a dot, `1.0e-4`."""
    if isinstance(value, str) and "e" in value.lower() and "." not in value:
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as text: write it with a dot, e.g. 1.0e-4)"
    return ""


def _matches(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(args[0], v) for v in value)
        return len(value) == len(args) and all(_matches(a, v) for a, v in zip(args, value))
    if origin is list:
        return isinstance(value, list) and all(_matches(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(args[0], k) and _matches(args[1], v) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


_PLURAL = {float: "finite numbers", int: "integers", str: "strings", bool: "booleans"}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if hint is float:
        return "a finite number"
    if hint is int:
        return "an integer"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "text"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_PLURAL.get(args[0], 'values')}"
        return f"a list of {len(args)} {_PLURAL.get(args[0], 'values') if len(set(args)) == 1 else 'values'}"
    if origin is dict:
        return f"a mapping of {_PLURAL.get(args[0], 'keys')} to {_PLURAL.get(args[1], 'values')}"
    if origin is list or dataclasses.is_dataclass(hint):
        return "a list" if origin is list else "a mapping"
    return str(hint)
