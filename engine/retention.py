"""Retention policy: which rows are old enough to prune, from the settings.

The engine reads no clock: ``now`` is passed in; the windows come from the
``retention`` setting (``{events: 180d, message_bodies: 90d, attempts: 180d}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from .durations import parse_duration


def cutoffs(retention: Mapping[str, str], now: datetime) -> dict[str, datetime]:
    """``{table: now - window}`` for each configured table (aware UTC in, aware out)."""
    return {name: now - parse_duration(text) for name, text in retention.items()}


__all__ = ["cutoffs"]
