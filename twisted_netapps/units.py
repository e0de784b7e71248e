"""Sizes and rates as people write them, and back: ``16MiB``, ``4MiB/s``, ``256KiB``, ``1.5MB``, ``1M``.

One convention for every command: ``KiB``/``MiB``/``GiB`` (and a bare
``K``/``M``/``G``, as curl's ``--limit-rate`` reads them) are powers of
1024; ``kB``/``MB``/``GB`` are powers of 1000; a plain number is bytes.
A rate is a size with an optional ``/s``.
"""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "ki": 1024, "kib": 1024, "m": 1024**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gi": 1024**3, "gib": 1024**3,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str, *, zero: bool = False) -> int:
    """Bytes in *text* (``16MiB``, ``256KiB``, ``1.5MB``, ``4096``); ValueError with the reason.

    ``0`` is refused unless *zero* (where it means "no limit").
    """
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size (examples: 16MiB, 256KiB, 1.5MB, 4096)")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"{text!r}: a size must be positive")
    return value


def parse_rate(text: str, *, zero: bool = False) -> int:
    """Bytes per second in *text* (``4MiB/s``, ``512KiB/s``, ``1MB``); ValueError with the reason."""
    body = text.strip()
    if body.lower().endswith("/s"):
        body = body[:-2]
    try:
        return parse_size(body, zero=zero)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate (examples: 4MiB/s, 512KiB/s)") from None


def format_size(value: float) -> str:
    """``16MiB``, ``1.5KiB``, ``300B``: three significant digits, binary units."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}B"


def format_rate(value: float) -> str:
    return f"{format_size(value)}/s"
