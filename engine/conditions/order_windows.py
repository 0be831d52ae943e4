"""Order windows: how many purchases, and for how much, in a window of time.

``orders: {within: 90d, count: {gte: 2}}``, ``orders: {in: this_quarter,
amount: {gte: 50000}}``, ``orders: {between: [2025-01-01, 2025-03-31], count:
{gte: 1}}``. One window (``within`` a duration up to ``now``, ``in`` a calendar
period, or ``between`` two days, both included) and one or more measures
(``count``, ``amount``), each a number test written like any other
(``{gte: 2}``, ``{between: [1, 3]}``, or a bare number for ``eq``).

Only orders that are purchases count (:data:`PURCHASE_STATUSES`): a paid
order, and one partly refunded (the customer kept something); refunded and
cancelled orders do not. Calendar periods and the days of ``between`` are read
in the zone of the ``now`` the caller passes (the business time zone: the
engine reads no clock and assumes no zone); ``within`` is zone-free.

This module is the one place the window arithmetic lives: the Python
predicate (:mod:`.predicate`) and the SQL compiler
(:mod:`engine.storage.condition_sql`) both take their bounds from
:func:`window_bounds`, so they cannot disagree on an edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from engine.definitions.errors import Problem, did_you_mean, unknown
from engine.durations import DurationError, parse_duration

from .ast import All, Any as AnyOf, Condition, Not, OrderWindow, Path, SegmentRef
from .kinds import ConditionError
from .values import to_number, utc_naive

#: The pseudo-field of order windows in a condition (``orders: {...}``).
ORDERS_KEY = "orders"
#: Order statuses that count as a purchase.
PURCHASE_STATUSES: tuple[str, ...] = ("paid", "partially_refunded")
#: The figures a window measures.
MEASURES: tuple[str, ...] = ("count", "amount")
#: How a window is given.
WINDOW_KEYS: tuple[str, ...] = ("within", "in", "between")
#: Calendar periods of ``in``, relative to ``now`` in its own zone.
PERIODS: tuple[str, ...] = (
    "this_month", "previous_month", "this_quarter", "previous_quarter", "this_year", "previous_year",
)
#: What people write for a period.
PERIOD_ALIASES: Mapping[str, str] = {
    "last_month": "previous_month", "prev_month": "previous_month",
    "last_quarter": "previous_quarter", "prev_quarter": "previous_quarter",
    "last_year": "previous_year", "prev_year": "previous_year",
    "current_month": "this_month", "current_quarter": "this_quarter", "current_year": "this_year",
}
#: Number tests a measure takes.
MEASURE_OPS: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte", "between")

_SHAPE = "condition_shape"
_EXAMPLE = "`orders: {within: 90d, count: {gte: 2}}`"


def is_order_window(key: object, value: object) -> bool:
    """Whether ``key: value`` in a condition is an order window.

    A form may have a field called ``orders``; a test on it never has a
    ``count`` or ``amount`` key (nor ``in`` with a single name), so those decide.
    """
    if key != ORDERS_KEY or not isinstance(value, Mapping):
        return False
    # `in` with one name is never a field test (those take a list).
    return any(m in value for m in MEASURES) or isinstance(value.get("in"), str)


def parse_order_window(value: Mapping[Any, Any], key_path: Path, problems: list[Problem]) -> Condition | None:
    """``{within|in|between: …, count|amount: test}`` → one :class:`OrderWindow` per test."""
    windows = [k for k in value if k in WINDOW_KEYS]
    before = len(problems)
    for key in value:
        if key not in WINDOW_KEYS and key not in MEASURES:
            problems.append(Problem(key_path + (str(key),), "unknown_key",
                                    f"unknown key `{key}` in `orders`" + (did_you_mean(str(key), WINDOW_KEYS + MEASURES)
                                    or "; it takes a window (" + ", ".join(f"`{k}`" for k in WINDOW_KEYS)
                                    + ") and `count` and/or `amount`"), at_key=True))
    if not windows:
        problems.append(Problem(key_path, _SHAPE,
                                "`orders` needs a window: `within: 90d`, `in: this_quarter` or "
                                "`between: [2025-01-01, 2025-03-31]`; lifetime figures are the customer "
                                "fields `order_count` and `total_spent`", at_key=True))
        return None
    if len(windows) > 1:
        problems.append(Problem(key_path + (str(windows[1]),), _SHAPE,
                                f"`orders` takes one window, not both `{windows[0]}` and `{windows[1]}`",
                                at_key=True))
        return None
    period = _period(windows[0], value[windows[0]], key_path + (windows[0],), problems)
    tests: list[OrderWindow] = []
    for measure in MEASURES:
        if measure in value:
            tests += _measure(period, measure, value[measure], key_path, problems)
    if len(problems) > before or period is None:
        return None
    return tests[0] if len(tests) == 1 else All(tuple(tests), path=key_path)


def _period(key: str, raw: object, path: Path, problems: list[Problem]) -> object:
    if key == "within":
        try:
            delta = raw if isinstance(raw, timedelta) else parse_duration(raw)
        except DurationError as exc:
            problems.append(Problem(path, "bad_duration", f"`within`: {exc}"))
            return None
        if delta <= timedelta(0):
            problems.append(Problem(path, "bad_duration", "`within` takes a duration above zero, e.g. `90d`"))
            return None
        return delta
    if key == "in":
        if isinstance(raw, str) and raw in PERIODS:
            return raw
        alias = PERIOD_ALIASES.get(str(raw).strip().lower().replace("-", "_").replace(" ", "_"))
        hint = f"; did you mean `{alias}`?" if alias else did_you_mean(str(raw), PERIODS)
        problems.append(Problem(path, "bad_value",
                                f"unknown period `{raw}` for `orders: {{in: ...}}`; periods are "
                                + ", ".join(f"`{p}`" for p in PERIODS) + hint))
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != 2:
        problems.append(Problem(path, "bad_value",
                                "`between` takes two days `[first, last]`, e.g. `[2025-01-01, 2025-03-31]`"))
        return None
    days: list[date] = []
    for i, item in enumerate(raw):
        day = _day(item)
        if day is None:
            problems.append(Problem(path + (i,), "bad_value",
                                    f"an ISO date (YYYY-MM-DD) expected in `between`, not `{item}`"))
        else:
            days.append(day)
    if len(days) == 2 and days[0] > days[1]:
        problems.append(Problem(path, "bad_value",
                                f"`between`: the first day {days[0]} is after the last day {days[1]}"))
        return None
    return tuple(days) if len(days) == 2 else None


def _day(item: object) -> date | None:
    if isinstance(item, datetime):
        return None
    if isinstance(item, date):
        return item
    if isinstance(item, str) and len(item.strip()) == 10:
        try:
            return date.fromisoformat(item.strip())
        except ValueError:
            return None
    return None


def _measure(period: object, measure: str, raw: object, key_path: Path,
             problems: list[Problem]) -> list[OrderWindow]:
    path = key_path + (measure,)
    if not isinstance(raw, Mapping):
        number = _number(measure, raw, path, problems)
        return [] if number is None else [OrderWindow(period, measure, "eq", number, path=path, key_path=key_path)]
    if not raw:
        problems.append(Problem(path, "empty_condition", f"no test for `{measure}`; write e.g. `{{gte: 2}}`"))
        return []
    out = []
    for op, operand in raw.items():
        op_path = path + (str(op),)
        if op not in MEASURE_OPS:
            problems.append(Problem(op_path, "unknown_operator",
                                    unknown(f"operator for `{measure}`", op, MEASURE_OPS), at_key=True))
            continue
        if op == "between":
            if not isinstance(operand, (list, tuple)) or len(operand) != 2:
                problems.append(Problem(op_path, "bad_value", "`between` takes two numbers `[low, high]`"))
                continue
            pair = [_number(measure, v, op_path + (i,), problems) for i, v in enumerate(operand)]
            if pair[0] is None or pair[1] is None:
                continue
            if pair[0] > pair[1]:
                problems.append(Problem(op_path, "bad_value",
                                        f"`between`: the low end {pair[0]} is above the high end {pair[1]}"))
                continue
            value: object = (pair[0], pair[1])
        else:
            value = _number(measure, operand, op_path, problems)
            if value is None:
                continue
        out.append(OrderWindow(period, measure, str(op), value, path=op_path, key_path=key_path))
    return out


def _number(measure: str, raw: object, path: Path, problems: list[Problem]) -> Decimal | None:
    try:
        value = to_number(raw)
    except ValueError:
        problems.append(Problem(path, "bad_value", f"a number expected for `{measure}`, not `{raw}`"
                                + ("; write `5万` as 50000" if isinstance(raw, str) else "")))
        return None
    if measure == "count" and value != value.to_integral_value():
        problems.append(Problem(path, "bad_value", f"`count` is a whole number of orders, not {raw}"))
        return None
    return value


# --- bounds and evaluation ------------------------------------------------------------


def window_bounds(period: object, now: datetime) -> tuple[datetime, datetime, bool]:
    """``(low, high, strict_high)`` in naive UTC: an order placed at ``t``
    is in the window when ``low <= t < high`` (``<= high`` unless strict).

    Raises:
        ConditionError: a calendar window and a naive ``now`` (its zone is the window's zone).
    """
    if isinstance(period, timedelta):
        n = utc_naive(now)
        return n - period, n, False
    if now.tzinfo is None:
        raise ConditionError("calendar order windows need an aware `now` (its zone is the business zone)")
    today = now.astimezone(now.tzinfo).date()
    if isinstance(period, tuple):
        first, last = period
        return _midnight(first, now), _midnight(last + timedelta(days=1), now), True
    if period not in PERIODS:
        raise ConditionError(f"unknown period `{period}`")
    span, which = str(period).rsplit("_", 1)
    back = 1 if span == "previous" else 0
    if which == "year":
        start, end = date(today.year - back, 1, 1), date(today.year - back + 1, 1, 1)
    else:
        months = 3 if which == "quarter" else 1
        index = (today.year * 12 + today.month - 1) // months - back  # periods since year 0
        first_month = index * months
        start = date(first_month // 12, first_month % 12 + 1, 1)
        after = first_month + months
        end = date(after // 12, after % 12 + 1, 1)
    return _midnight(start, now), _midnight(end, now), True


def _midnight(day: date, now: datetime) -> datetime:
    return utc_naive(datetime(day.year, day.month, day.day, tzinfo=now.tzinfo))


def measure_orders(orders: Iterable[Any], node: OrderWindow, now: datetime) -> Decimal:
    """The measure of ``node`` over a customer's orders: items with
    ``placed_at`` (naive UTC), ``amount`` (net of refunds, as loaded) and ``status`` (mappings or objects)."""
    low, high, strict = window_bounds(node.period, now)
    count = 0
    total = Decimal(0)
    for order in orders:
        get = order.get if isinstance(order, Mapping) else lambda k, o=order: getattr(o, k)
        if get("status") not in PURCHASE_STATUSES:
            continue
        placed = get("placed_at")
        if not isinstance(placed, datetime):
            continue
        placed = utc_naive(placed)
        if placed < low or (placed >= high if strict else placed > high):
            continue
        count += 1
        amount = get("amount")
        total += to_number(amount) if amount is not None else Decimal(0)
    return Decimal(count) if node.measure == "count" else total


def compare_measure(node: OrderWindow, figure: Decimal) -> bool:
    """``figure`` against the node's test."""
    op, value = node.op, node.value
    if op == "between":
        low, high = cast("tuple[Decimal, Decimal]", value)
        return bool(low <= figure <= high)
    target: Decimal = value  # type: ignore[assignment]
    return {
        "eq": figure == target, "ne": figure != target, "gt": figure > target,
        "gte": figure >= target, "lt": figure < target, "lte": figure <= target,
    }[op]


# --- reading conditions -------------------------------------------------------------------


def order_windows(cond: Condition, segments: Mapping[str, Condition] | None = None) -> Iterator[OrderWindow]:
    """Every order window in ``cond``, following segment references when
    ``segments`` is given (each segment once)."""
    seen: set[str] = set()
    stack: list[Condition] = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, OrderWindow):
            yield node
        elif isinstance(node, (All, AnyOf)):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, SegmentRef) and segments is not None and node.segment_id not in seen:
            seen.add(node.segment_id)
            target = segments.get(node.segment_id)
            if target is not None:
                stack.append(target)


def earliest_order_needed(conds: Iterable[Condition], now: datetime,
                          segments: Mapping[str, Condition] | None = None) -> datetime | None:
    """The earliest ``placed_at`` (naive UTC) any window of ``conds`` looks at,
    or None when they have no order window (so a loader reads only what is needed)."""
    lows = [window_bounds(w.period, now)[0] for c in conds for w in order_windows(c, segments)]
    return min(lows) if lows else None


# --- words -------------------------------------------------------------------------------------

_PERIOD_WORDS = {
    "this_month": ("本月", "this month"), "previous_month": ("上月", "last month"),
    "this_quarter": ("本季度", "this quarter"), "previous_quarter": ("上季度", "last quarter"),
    "this_year": ("今年", "this year"), "previous_year": ("去年", "last year"),
}
_OP_SIGNS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def describe_order_window(node: OrderWindow, locale: str = "zh") -> str:
    """The test in words for people: ``本季度订单金额 ≥ 50000`` / ``orders this quarter: amount ≥ 50000``."""
    zh = locale.startswith("zh")
    period = node.period
    if isinstance(period, timedelta):
        days = period / timedelta(days=1)
        span = f"{days:g}" if days == int(days) else f"{period.total_seconds() / 3600:g}h"
        where = (f"近{span}天" if days == int(days) else f"近{span}") if zh else (
            f"in the last {span} days" if days == int(days) else f"in the last {span}")
    elif isinstance(period, tuple):
        where = f"{period[0]} 至 {period[1]}" if zh else f"from {period[0]} to {period[1]}"
    else:
        zh_word, en_word = _PERIOD_WORDS[str(period)]
        where = zh_word if zh else en_word
    what = ("订单数" if node.measure == "count" else "订单金额") if zh else node.measure
    if node.op == "between":
        low, high = cast("tuple[Decimal, Decimal]", node.value)
        test = f"{low}–{high}" if zh else f"between {low} and {high}"
        return f"{where}{what} {test}" if zh else f"orders {where}: {what} {test}"
    sign = _OP_SIGNS[node.op]
    return f"{where}{what} {sign} {node.value}" if zh else f"orders {where}: {what} {sign} {node.value}"
