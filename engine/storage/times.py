"""Timestamps cross the database boundary as naive UTC.

Every ``DateTime`` column is declared without a time zone: SQLite has no
time-zone type and PostgreSQL's ``timestamptz`` would convert through the
session time zone. Storing naive UTC on both keeps values byte-identical across
backends; these helpers are the only sanctioned way across that boundary, so a
local or naive time cannot slip in unnoticed.
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_db_time(value: datetime) -> datetime:
    """Convert an aware datetime to the naive UTC value a column stores.

    Raises:
        ValueError: if ``value`` is naive; guessing its zone would silently
            shift times by hours.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC).replace(tzinfo=None)


def from_db_time(value: datetime) -> datetime:
    """Mark a naive UTC value read from a column as aware UTC.

    Raises:
        ValueError: if ``value`` already carries a zone, which means it did not
            come from one of our columns (or a driver changed behaviour).
    """
    if value.tzinfo is not None:
        raise ValueError(
            f"expected a naive UTC datetime from the database, got {value.isoformat()}"
        )
    return value.replace(tzinfo=UTC)


def to_db_time_opt(value: datetime | None) -> datetime | None:
    """``to_db_time`` that passes ``None`` through, for nullable columns."""
    return None if value is None else to_db_time(value)


def from_db_time_opt(value: datetime | None) -> datetime | None:
    """``from_db_time`` that passes ``None`` through, for nullable columns."""
    return None if value is None else from_db_time(value)
