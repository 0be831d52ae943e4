"""Typed values: operands as written → Python values of a field kind, and back.

Shared by :mod:`.check` (to report bad operands), :mod:`.predicate` and the SQL
compiler (to compare like with like). Datetimes are naive UTC throughout,
matching the storage convention; dates are compared with ``now``'s UTC date.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from .kinds import FieldKind

_EXPECTED = {
    FieldKind.TEXT: "text",
    FieldKind.NUMBER: "a number",
    FieldKind.DATE: "an ISO date (YYYY-MM-DD)",
    FieldKind.DATETIME: "an ISO date or datetime (YYYY-MM-DDTHH:MM:SS)",
    FieldKind.BOOL: "true or false",
    FieldKind.LIST: "a single text value",
}


def expected(kind: FieldKind) -> str:
    """What an operand of ``kind`` must look like, for messages."""
    return _EXPECTED[kind]


def utc_naive(value: datetime) -> datetime:
    """An aware datetime as naive UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is not None and value.utcoffset() is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(tzinfo=None)


def to_number(value: object) -> Decimal:
    """An int, float or Decimal as a Decimal (floats by their shortest repr).

    Raises:
        ValueError: for anything else, bools and non-finite floats included.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(value)
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(value)
        return value
    raise ValueError(value)


def to_date(value: object) -> date:
    """A ``date`` or ISO ``YYYY-MM-DD`` text as a date.

    Raises:
        ValueError: for anything else (a datetime is not a date).
    """
    if isinstance(value, datetime):
        raise ValueError(value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return date.fromisoformat(text)
    raise ValueError(value)


def to_datetime(value: object) -> datetime:
    """A datetime, a date (midnight) or ISO text as a naive UTC datetime.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(value, datetime):
        return utc_naive(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 10:
            return utc_naive(datetime.fromisoformat(text))
    raise ValueError(value)


def to_operand(kind: FieldKind, value: object) -> object:
    """Convert an operand as written to the Python value it is compared as.

    Raises:
        ValueError: the operand does not fit the kind (see :func:`expected`).
    """
    if kind is FieldKind.TEXT or kind is FieldKind.LIST:
        if isinstance(value, str):
            return value
        raise ValueError(value)
    if kind is FieldKind.NUMBER:
        return to_number(value)
    if kind is FieldKind.DATE:
        return to_date(value)
    if kind is FieldKind.DATETIME:
        return to_datetime(value)
    if kind is FieldKind.BOOL:
        if isinstance(value, bool):
            return value
        raise ValueError(value)
    raise ValueError(kind)  # pragma: no cover


def duration_bounds(
    kind: FieldKind, op: str, delta: timedelta, now: datetime
) -> tuple[date | datetime | None, date | datetime | None, bool]:
    """Bounds of a relative test: ``(low, high, strict_high)``.

    ``older_than``: value < now − d (strict, no low); ``within``:
    now − d ≤ value ≤ now; ``within_next``: now ≤ value ≤ now + d. For date
    fields the bounds are the UTC dates of those instants.
    """
    n = utc_naive(now)
    if kind is FieldKind.DATE:
        if op == "older_than":
            return None, (n - delta).date(), True
        if op == "within":
            return (n - delta).date(), n.date(), False
        return n.date(), (n + delta).date(), False
    if op == "older_than":
        return None, n - delta, True
    if op == "within":
        return n - delta, n, False
    return n, n + delta, False


def iso_datetime(value: datetime) -> str:
    """The canonical text of a datetime inside JSON data (naive UTC isoformat).

    JSON record data compares datetimes as text in SQL, which orders correctly
    only when every stored value uses this one form.
    """
    return utc_naive(value).isoformat()


#: The text forms of dates and datetimes that stored JSON data may hold; the
#: SQL compiler recognizes exactly these shapes, anything else reads as missing.
ISO_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_DATETIME_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?")


def stored_date(value: object) -> date:
    """A date as stored: a ``date``, a ``datetime`` (its UTC date) or ``YYYY-MM-DD`` text.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, datetime):
        return utc_naive(value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and ISO_DATE_SHAPE.fullmatch(value):
        return date.fromisoformat(value)
    raise ValueError(value)


def stored_datetime(value: object) -> datetime:
    """A datetime as stored: a ``datetime`` or canonical :func:`iso_datetime` text.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, datetime):
        return utc_naive(value)
    if isinstance(value, str) and ISO_DATETIME_SHAPE.fullmatch(value):
        return datetime.fromisoformat(value)
    raise ValueError(value)
