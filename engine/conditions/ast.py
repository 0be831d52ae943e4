"""The condition tree: small frozen dataclasses, built by :mod:`.parse`.

Every node carries ``path``: where it sits in the definition it came from, so
checks can report a problem at the right YAML node. ``path`` takes no part in
equality, so two conditions that mean the same compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class All:
    """True when every item is true (true when empty)."""

    items: tuple[Condition, ...]
    path: Path = _field(default=(), compare=False)


@dataclass(frozen=True)
class Any:
    """True when at least one item is true (false when empty)."""

    items: tuple[Condition, ...]
    path: Path = _field(default=(), compare=False)


@dataclass(frozen=True)
class Not:
    """Plain negation: conditions are two-valued, missing values included."""

    item: Condition
    path: Path = _field(default=(), compare=False)


@dataclass(frozen=True)
class Compare:
    """A field test ``{field: {op: value}}``.

    ``path`` locates the value (``(..., field, op)``, or ``(..., field)`` for the
    shorthand ``{field: value}``); ``key_path`` locates the field name key.
    ``value`` is a ``timedelta`` for duration operators, a tuple for ``in``,
    ``not_in`` and ``between``, a bool for ``is_empty``, and otherwise as written.
    """

    field: str
    op: str
    value: object
    path: Path = _field(default=(), compare=False)
    key_path: Path = _field(default=(), compare=False)


@dataclass(frozen=True)
class SegmentRef:
    """``{segment: id}``: the condition of another segment definition."""

    segment_id: str
    path: Path = _field(default=(), compare=False)


@dataclass(frozen=True)
class OrderWindow:
    """``orders: {within: 90d, count: {gte: 2}}``: a test on the customer's
    purchases in a window (see :mod:`.order_windows`).

    ``period`` is a ``timedelta`` (``within``: the last N days up to ``now``),
    a calendar period name (``in: this_quarter``) or a ``(first, last)`` pair of
    dates (``between``, both days included). ``measure`` is ``count`` or
    ``amount`` (the sum of the orders' amounts); ``op`` one of
    :data:`.order_windows.MEASURE_OPS`; ``value`` a ``Decimal`` (a pair for
    ``between``).
    """

    period: object
    measure: str
    op: str
    value: object
    path: Path = _field(default=(), compare=False)
    key_path: Path = _field(default=(), compare=False)


Condition = All | Any | Not | Compare | SegmentRef | OrderWindow
