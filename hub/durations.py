"""Durations as people write them in the config: ``"30s"``, ``"90m"``, ``"1h30m"``, ``"2d"``.

A plain integer (or a string of digits) is a number of seconds.
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([dhms])")
_WHOLE = re.compile(r"(?:\d+[dhms])+")


def parse_duration(value: object) -> timedelta:
    """The :class:`timedelta` of ``value``; raises ValueError saying what is accepted."""
    if isinstance(value, bool):  # bool is an int in Python; "true" is no duration
        raise ValueError(f"expected a duration such as '90m' or '1h30m', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return _seconds(value, value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '90m' or '1h30m', got {value!r}")
    text = value.strip().lower().replace(" ", "")
    if text.isdigit():
        return _seconds(int(text), value)
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f"bad duration {value!r}: write a number with units d, h, m, s "
            "(e.g. '30s', '90m', '1h30m', '2d') or whole seconds"
        )
    units = [unit for _, unit in _PART.findall(text)]
    if len(set(units)) != len(units):
        raise ValueError(f"bad duration {value!r}: a unit appears twice")
    return _seconds(sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text)), value)


def _seconds(seconds: int, written: object) -> timedelta:
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # timedelta ends at 999999999 days
        raise ValueError(f"duration {written!r} is too long") from None
