"""TOML as text: on which line each key was written, and writing values back.

``tomllib`` gives values without positions; error messages must name the
line the user wrote (``netapps.toml:12: dns.zones[0].file: required``), so
:func:`key_lines` finds the line of every table header and key by a light
scan of the text (tables, arrays of tables with their index, dotted and
quoted keys; a key inside an inline table or a multi-line value maps to the
line of the key that holds it). :func:`format_value` and :func:`format_key`
write TOML back for ``netapps config show``.

No Twisted imports here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

KeyPath = tuple  # of str (keys) and int (array-of-tables / array indexes)

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(rf"{_BARE}|{_QUOTED}")


def _split_dotted(text: str) -> tuple[str, ...]:
    parts = []
    for match in _PART.finditer(text):
        part = match.group(0)
        if part.startswith('"'):
            part = json.loads(part)
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every table and key path written in *text* to its first line (1-based)."""
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    array_counts: dict[tuple[str, ...], int] = {}
    in_multiline: str | None = None  # the closing quotes of an open multi-line string
    depth = 0  # open brackets/braces of a multi-line value
    for number, line in enumerate(text.splitlines(), 1):
        if in_multiline is not None:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        if depth > 0:
            depth += _bracket_balance(line)
            continue
        header = _HEADER.match(line)
        if header:
            path = _split_dotted(header.group(2))
            if header.group(1) == "[[":
                index = array_counts.get(path, 0)
                array_counts[path] = index + 1
                lines.setdefault(path, number)
                table = (*path, index)
            else:
                table = path
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            lines.setdefault((*table, *_split_dotted(assign.group(1))), number)
            rest = line[assign.end():]
            for quotes in ('"""', "'''"):
                if rest.count(quotes) % 2 == 1:
                    in_multiline = quotes
            if in_multiline is None:
                depth = max(0, _bracket_balance(rest))
    return lines


def _bracket_balance(text: str) -> int:
    """Opened minus closed brackets/braces outside strings and comments."""
    balance = 0
    quote = None
    escaped = False
    for char in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            break
        elif char in "[{":
            balance += 1
        elif char in "]}":
            balance -= 1
    return balance


def _basic_string(text: str) -> str:
    # JSON's string escapes are a subset of TOML basic strings'; TOML also
    # forbids a raw DEL, which JSON leaves as it is.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def format_key(key: str) -> str:
    return key if re.fullmatch(_BARE, key) else _basic_string(key)


def format_path(path: KeyPath) -> str:
    """``("dns", "zones", 0, "file")`` -> ``dns.zones[0].file`` (the form error messages use)."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def parse_path(text: str) -> KeyPath:
    """The inverse of :func:`format_path` for paths without quoted keys."""
    path: list = []
    for match in re.finditer(r"\[(\d+)\]|([^.\[\]]+)", text):
        path.append(int(match.group(1)) if match.group(1) is not None else match.group(2))
    return tuple(path)


def format_value(value: Any) -> str:
    """*value* as a TOML value (inline tables for dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _basic_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{format_key(k)} = {format_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
