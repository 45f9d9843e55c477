"""Frozen-dataclass configs: `--set key=value` overrides with type checking, and JSON round trips.

Every algorithm and env has a frozen dataclass config; this module applies string overrides
(`"hidden_sizes=[64,64]"`, `"lr=3e-4"`, `"env.cost_bound=0.5"`) and reports bad keys/types as `UserError`.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from saferl.errors import UserError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")  # a config: a (frozen) dataclass


def is_integer(value: Any) -> bool:
    """Whether `value` is an integer (Python or numpy), bools excluded: what config checks accept as a count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether `value` is a real number (int, float or numpy scalar), bools excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def field_names(config_cls: Any) -> list[str]:
    """Names of the fields of a config dataclass (class or instance)."""
    return [f.name for f in dataclasses.fields(config_cls)]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert a JSON-decoded `value` (use `parse_overrides` for CLI strings) to `annotation`, or raise UserError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(f"config key '{key}': value {value!r} does not match {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"config key '{key}': value {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, Mapping) and args and typing.get_origin(args[0]) is tuple:
            value = list(value.items())  # {"pole": 2} for pairs like tuple[tuple[str, float], ...]
        if isinstance(value, str):
            raise UserError(f"config key '{key}': expected a list like [1,2], got {value!r}")
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}': expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise UserError(f"config key '{key}': expected {len(args)} items, got {len(value)}")
        item_types = [args[0]] * len(value) if (not args or args[-1] is Ellipsis or origin is list) else list(args)
        items = [
            _coerce(v, t, key) if t is not None else v
            for v, t in zip(value, item_types or [Any] * len(value), strict=False)
        ]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UserError(f"config key '{key}': expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"config key '{key}': expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            return str(value)
        return value
    return value


def _parse_literal(text: str) -> Any:
    """Parse a CLI value: JSON if it parses (numbers, lists, true/false/null), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["a=1", "b.c=[1,2]"]` -> `{"a": 1, "b.c": [1, 2]}` (values JSON-decoded where possible)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set expects key=value, got {pair!r}")
        key, _, raw = pair.partition("=")
        key = key.strip()
        if not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        out[key] = _parse_literal(raw.strip())
    return out


def apply_overrides(config: C, overrides: Mapping[str, Any], where: str = "config") -> C:
    """Return a copy of the frozen dataclass `config` with `overrides` applied.

    Keys may be dotted (`"model.hidden_sizes"`) to reach nested dataclass fields. Unknown keys and values
    of the wrong type raise `UserError` naming the key and listing the valid ones. `__post_init__`
    validation of the config runs on the result; its `ValueError`s become `UserError`s.
    """
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    hints = typing.get_type_hints(type(config))
    valid = field_names(config)
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in valid:
            raise UserError(f"unknown {where} key '{head}'; valid keys: {', '.join(valid)}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            current = getattr(config, head)
            if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
                nested.setdefault(head, {}).update(value)
            else:
                direct[head] = _coerce(value, hints[head], f"{where}.{head}" if where != "config" else head)
    for head, sub in nested.items():
        current = getattr(config, head)
        if not dataclasses.is_dataclass(current) or isinstance(current, type):
            raise UserError(f"{where} key '{head}' has no sub-keys (got {list(sub)})")
        direct[head] = apply_overrides(current, sub, where=f"{where}.{head}" if where != "config" else head)
    try:
        return dataclasses.replace(config, **direct)
    except (ValueError, TypeError) as err:
        raise UserError(f"invalid {where}: {err}") from None


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-serialisable dict of a (possibly nested) config dataclass."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def from_dict(config_cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a config of `config_cls` from `to_dict` output (validated like overrides)."""
    return apply_overrides(config_cls(), dict(data))
