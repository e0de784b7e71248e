"""Sizes and rates as people write them: ``16MiB``, ``4MiB/s``, ``256KiB``, ``1.5MB/s``, ``1000``."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in *text* (``16MiB``, ``256KiB``, ``1.5MB``, ``4096``); ValueError with the reason."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 16MiB, 256KiB, 1.5MB, 4096)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return value


def parse_rate(text: str) -> int:
    """Bytes per second in *text* (``4MiB/s``, ``512KiB/s``, ``1MB``); ValueError with the reason."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        return parse_size(body)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate (examples: 4MiB/s, 512KiB/s)") from None


def format_size(value: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}B"
