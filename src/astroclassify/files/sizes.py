"""Byte sizes as people read them: binary units, named as such (20 MiB, not "21 MB")."""

from __future__ import annotations

__all__ = ["format_bytes"]

_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


def format_bytes(n: int | float) -> str:
    """``format_bytes(20 * 2**20) == "20 MiB"``; one decimal below 10 of a unit, none above.

    Examples
    --------
    >>> format_bytes(512), format_bytes(1536), format_bytes(64 * 2**20), format_bytes(3 * 2**30)
    ('512 bytes', '1.5 KiB', '64 MiB', '3 GiB')
    """
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    if unit == 0:
        return f"{int(value)} bytes"
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text.removesuffix('.0')} {_UNITS[unit]}"
