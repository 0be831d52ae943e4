"""Conditions compiled to Python predicates over one row.

The semantics are two-valued and match :mod:`engine.storage.condition_sql`
exactly: a test on a missing (``None``/absent) value is false, except ``ne``,
``not_in`` and ``not_contains`` (the negations of ``eq``, ``in`` and
``contains``) which are true, and ``is_empty`` which is true; ``not`` is plain
negation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any as AnyType

from .ast import All, Any, Compare, Condition, Not, OrderWindow, SegmentRef
from .kinds import DURATION_OPS, ConditionError, FieldKind
from .order_windows import ORDERS_KEY, compare_measure, measure_orders
from .resolve import SegmentResolver
from .values import (
    duration_bounds,
    stored_date,
    stored_datetime,
    to_datetime,
    to_number,
    to_operand,
    utc_naive,
)

Row = Mapping[str, object]
Predicate = Callable[[Row, datetime], bool]

_MISSING = object()


def compile_predicate(
    cond: Condition,
    *,
    segments: Mapping[str, Condition] = {},
    kinds: Mapping[str, FieldKind] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> Predicate:
    """Compile ``cond`` once into ``predicate(row, now) -> bool``.

    ``row`` maps field names to values; a dotted field ``a.b`` is read from the
    flat key ``"a.b"`` or from ``row["a"]["b"]``. List fields hold lists or
    sets, dates ``date`` (or ISO text), datetimes aware or naive-UTC
    ``datetime`` (or ISO text), numbers int/float/Decimal (compared exactly as
    Decimal). ``now`` is an aware datetime; date fields compare with its UTC
    date. ``kinds`` gives each field's kind (operands are converted once, here);
    without it the kind is inferred from the operand. ``defaults`` gives the
    value of a field when the row lacks it (consents: ``False``). Order
    windows read ``row["orders"]``: the customer's orders (``placed_at``,
    ``amount``, ``status``) at least as far back as the windows reach; their
    calendar periods are in ``now``'s zone.

    Raises:
        ConditionError: unknown segment, segment cycle, or an operand that does
            not fit its field (a condition that skipped ``check_condition``).
    """
    defaults = defaults or {}

    def build(node: Condition) -> Predicate:
        if isinstance(node, Compare):
            return _compile_compare(node, kinds, defaults.get(node.field))
        if isinstance(node, All):
            parts = tuple(build(i) for i in node.items)
            if len(parts) == 1:
                return parts[0]
            return lambda row, now: all(p(row, now) for p in parts)
        if isinstance(node, Any):
            parts = tuple(build(i) for i in node.items)
            if len(parts) == 1:
                return parts[0]
            return lambda row, now: any(p(row, now) for p in parts)
        if isinstance(node, Not):
            inner = build(node.item)
            return lambda row, now: not inner(row, now)
        if isinstance(node, SegmentRef):
            return resolver.get(node.segment_id)
        if isinstance(node, OrderWindow):
            return _compile_order_window(node)
        raise ConditionError(f"not a condition: {node!r}")

    resolver: SegmentResolver[Predicate] = SegmentResolver(segments, build)
    return build(cond)


def _compile_order_window(node: OrderWindow) -> Predicate:
    def test(row: Row, now: datetime) -> bool:
        orders = row.get(ORDERS_KEY)
        if orders is None:
            # A loader that forgot the orders would silently read "no purchases".
            raise ConditionError("this condition tests orders but the row has none loaded (`orders`)")
        return compare_measure(node, measure_orders(orders, node, now))  # type: ignore[arg-type]

    return test


def _getter(field: str, default: object) -> Callable[[Row], object]:
    parts = field.split(".")

    def get(row: Row) -> object:
        value = row.get(field, _MISSING)
        if value is _MISSING and len(parts) > 1:
            value = row
            for part in parts:
                if not isinstance(value, Mapping):
                    value = None
                    break
                value = value.get(part)
        if value is _MISSING or value is None:
            return default
        return value

    return get


def _infer_kind(node: Compare) -> FieldKind | None:
    if node.op in ("contains", "not_contains"):
        return FieldKind.LIST
    if node.op == "is_empty" or node.op in DURATION_OPS:
        return None  # decided per value
    sample = node.value[0] if isinstance(node.value, tuple) and node.value else node.value
    if isinstance(sample, bool):
        return FieldKind.BOOL
    if isinstance(sample, datetime):
        return FieldKind.DATETIME
    if isinstance(sample, date):
        return FieldKind.DATE
    if isinstance(sample, str) and node.op in ("gt", "gte", "lt", "lte", "between"):
        return FieldKind.DATE if len(sample.strip()) == 10 else FieldKind.DATETIME
    if isinstance(sample, str):
        return FieldKind.TEXT
    return FieldKind.NUMBER


def _normalizer(kind: FieldKind | None) -> Callable[[object], object]:
    """Row value → comparable value, or None when missing or unreadable."""

    def safe(convert: Callable[[object], object]) -> Callable[[object], object]:
        def norm(value: object) -> object:
            if value is None:
                return None
            try:
                return convert(value)
            except (ValueError, TypeError):
                return None

        return norm

    if kind is FieldKind.NUMBER:
        return safe(to_number)
    if kind is FieldKind.DATE:
        return safe(stored_date)
    if kind is FieldKind.DATETIME:
        return safe(stored_datetime)
    if kind is FieldKind.BOOL:
        return lambda v: v if isinstance(v, bool) else None
    if kind is FieldKind.LIST:
        return lambda v: frozenset(v) if isinstance(v, (list, tuple, set, frozenset)) else frozenset()
    if kind is FieldKind.TEXT:
        return lambda v: v if isinstance(v, str) else None
    # Unknown kind (duration tests without a catalog): by the value's own type.
    return safe(lambda v: utc_naive(v) if isinstance(v, datetime) else v if isinstance(v, date) else to_datetime(v))


def _is_empty(value: object) -> bool:
    if value is None or value == "":
        return True
    return isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) == 0


def _compile_compare(node: Compare, kinds: Mapping[str, FieldKind] | None, default: object) -> Predicate:
    get = _getter(node.field, default)
    op = node.op
    if kinds is not None:
        if node.field not in kinds:
            raise ConditionError(f"unknown field `{node.field}`")
        kind: FieldKind | None = kinds[node.field]
    elif op == "is_empty":
        want = bool(node.value)
        return lambda row, now: _is_empty(get(row)) is want
    else:
        kind = _infer_kind(node)
    norm = _normalizer(kind)
    if op == "is_empty":
        # A value of the wrong type (text in a number field) reads as missing, as in SQL.
        want = bool(node.value)
        return lambda row, now: _is_empty(norm(get(row))) is want

    if op in DURATION_OPS:
        delta = node.value
        if kind is None:
            def relative(row: Row, now: datetime) -> bool:
                v = norm(get(row))
                if v is None:
                    return False
                k = FieldKind.DATETIME if isinstance(v, datetime) else FieldKind.DATE
                lo, hi, strict = duration_bounds(k, op, delta, now)  # type: ignore[arg-type]
                return _within(v, lo, hi, strict)
            return relative

        def relative_kind(row: Row, now: datetime) -> bool:
            v = norm(get(row))
            if v is None:
                return False
            lo, hi, strict = duration_bounds(kind, op, delta, now)  # type: ignore[arg-type]
            return _within(v, lo, hi, strict)

        return relative_kind

    assert kind is not None

    def operand(value: object) -> AnyType:
        try:
            return to_operand(kind, value)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise ConditionError(f"bad value {value!r} for {kind.value} field `{node.field}`") from None

    if op in ("contains", "not_contains"):
        item = operand(node.value)
        positive = op == "contains"
        return lambda row, now: (item in norm(get(row))) is positive  # type: ignore[operator]
    if op in ("in", "not_in"):
        options = frozenset(operand(v) for v in _items(node.value))
        positive = op == "in"

        def member(row: Row, now: datetime) -> bool:
            v = norm(get(row))
            return (v is not None and v in options) is positive

        return member
    if op == "between":
        lo, hi = (operand(v) for v in _items(node.value))

        def between(row: Row, now: datetime) -> bool:
            v = norm(get(row))
            return v is not None and _safe_cmp(lambda: lo <= v <= hi)

        return between
    target = operand(node.value)
    if op in ("eq", "ne"):
        positive = op == "eq"

        def equal(row: Row, now: datetime) -> bool:
            v = norm(get(row))
            return (v is not None and v == target) is positive

        return equal
    compare = _ORDER[op]

    def ordered(row: Row, now: datetime) -> bool:
        v = norm(get(row))
        return v is not None and _safe_cmp(lambda: compare(v, target))

    return ordered


def _items(value: object) -> tuple[object, ...]:
    if not isinstance(value, tuple):
        raise ConditionError(f"a list of values expected, not {value!r}")
    return value


_ORDER: dict[str, Callable[[AnyType, AnyType], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


def _safe_cmp(test: Callable[[], bool]) -> bool:
    try:
        return bool(test())
    except TypeError:
        return False


def _within(value: AnyType, lo: AnyType, hi: AnyType, strict_high: bool) -> bool:
    try:
        if lo is not None and value < lo:
            return False
        return value < hi if strict_high else value <= hi
    except TypeError:
        return False
