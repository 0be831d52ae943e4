"""Durations as users write them: ``90d``, ``48h``, ``15m``, ``2w``, ``1d12h``, ``30s``."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"^(?:\d+[wdhms])+$")
_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class DurationError(ValueError):
    """The text is not a duration."""


def parse_duration(text: object) -> timedelta:
    """Parse ``90d`` style text into a timedelta.

    Raises:
        DurationError: with a message a business user can act on.
    """
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise DurationError(
            f"`{text}` is not a duration; write a number and a unit, e.g. 90d, 48h, 15m, 2w"
        )
    total = timedelta()
    for amount, unit in _PART.findall(text.strip()):
        total += timedelta(**{_UNIT[unit]: int(amount)})
    if total <= timedelta(0):
        raise DurationError(f"`{text}` is not a positive duration")
    return total


def format_duration(delta: timedelta) -> str:
    """Inverse of :func:`parse_duration` for whole seconds (``timedelta(days=90)`` → ``90d``)."""
    seconds = int(delta.total_seconds())
    out = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if unit == "w" and seconds % 604800:
            continue
        amount, seconds = divmod(seconds, size)
        if amount:
            out.append(f"{amount}{unit}")
    return "".join(out) or "0s"
