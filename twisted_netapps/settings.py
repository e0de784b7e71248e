"""Typed settings: TOML tables checked against frozen dataclasses.

Each service declares its settings as a frozen dataclass whose fields carry
defaults. :func:`from_table` turns one TOML table into an instance, rejecting
unknown keys and wrong types with a :class:`ConfigError` that names the key
path (``uppercase.idle_timeout: expected an integer, got a string``).

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``list[T]``,
``dict[str, T]``, ``T | None`` and nested settings dataclasses (a TOML table,
or a list of them as ``list[Cls]`` for arrays of tables).

No Twisted imports here: this is the bottom layer.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from twisted_netapps.errors import ConfigError

T = TypeVar("T")

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "a table",
}


def _describe(value: Any) -> str:
    for typ, name in _TYPE_NAMES.items():
        if type(value) is typ:
            return name
    return type(value).__name__


def _check(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if value is None and type(None) in members:
            return None
        errors = []
        for member in members:
            if member is type(None):
                continue
            try:
                return _check(value, member, where)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected an array, got {_describe(value)}")
        return [_check(item, item_type, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        _key_type, item_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_describe(value)}")
        return {k: _check(v, item_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_describe(value)}")
        return from_table(annotation, value, where)
    if annotation is Any:
        return value
    if annotation is float:
        # TOML writes 5 and 5.0 differently; a number is a number.
        if type(value) in (int, float):
            return float(value)
    elif type(value) is annotation:  # bool is not accepted where int is wanted
        return value
    raise ConfigError(
        f"{where}: expected {_TYPE_NAMES.get(annotation, annotation)}, got {_describe(value)}"
    )


def from_table(cls: type[T], table: dict[str, Any], where: str) -> T:
    """Build settings dataclass *cls* from TOML *table*; *where* prefixes errors."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known keys: {', '.join(sorted(known))})"
        )
    values = {}
    for name, value in table.items():
        values[name] = _check(value, hints[name], f"{where}.{name}")
        _check_bounds(values[name], known[name].metadata, f"{where}.{name}")
    try:
        instance = cls(**values)
    except TypeError as e:  # a required field without default was not given
        raise ConfigError(f"{where}: {e}") from None
    validate = getattr(instance, "validate", None)
    if validate is not None:
        validate(where)
    return instance


def _check_bounds(value: Any, metadata, where: str) -> None:
    """Apply a field's declared ``minimum``/``maximum``/``positive``/``choices``."""
    low, high = metadata.get("minimum"), metadata.get("maximum")
    if metadata.get("positive") and not value > 0:
        raise ConfigError(f"{where}: must be positive")
    if low is not None and high is not None and not low <= value <= high:
        raise ConfigError(f"{where}: must be between {low} and {high}")
    if low is not None and value < low:
        raise ConfigError(f"{where}: must be at least {low}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be at most {high}")
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, choices))}")


def field_docs(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, doc) for each field: used to render the config reference."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append((f.name, default, f.metadata.get("doc", "")))
    return rows


def setting(
    default: Any,
    doc: str = "",
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field with a default (lists/dicts copied), a doc string and
    optional bounds, checked by :func:`from_table` with a message naming the key."""
    metadata = {"doc": doc}
    for key, value in (("minimum", minimum), ("maximum", maximum), ("choices", choices)):
        if value is not None:
            metadata[key] = value
    if positive:
        metadata["positive"] = True
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)
