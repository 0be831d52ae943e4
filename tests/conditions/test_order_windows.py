"""Order windows: the calendar arithmetic at year edges in the zone of ``now``,
the words shown to people (zh, en), and parse errors (the definition corpus
has their file:line:col forms)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.conditions import CUSTOMER_FIELDS, check_condition, compile_predicate, parse_condition
from engine.conditions.describe import describe_condition
from engine.conditions.kinds import ConditionError
from engine.conditions.order_windows import window_bounds

SH = ZoneInfo("Asia/Shanghai")


def _utc(y: int, m: int, d: int, zone: ZoneInfo = SH) -> datetime:
    return datetime(y, m, d, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


@pytest.mark.parametrize(("period", "first", "after"), [
    ("this_month", (2026, 1, 1), (2026, 2, 1)),
    ("previous_month", (2025, 12, 1), (2026, 1, 1)),
    ("this_quarter", (2026, 1, 1), (2026, 4, 1)),
    ("previous_quarter", (2025, 10, 1), (2026, 1, 1)),
    ("this_year", (2026, 1, 1), (2027, 1, 1)),
    ("previous_year", (2025, 1, 1), (2026, 1, 1)),
])
def test_calendar_periods_at_the_turn_of_the_year_in_beijing(period: str, first: tuple, after: tuple) -> None:
    # 31 Dec 2025 17:00 UTC is already 1 Jan 2026 01:00 in Beijing.
    now = datetime(2025, 12, 31, 17, 0, tzinfo=UTC).astimezone(SH)
    assert window_bounds(period, now) == (_utc(*first), _utc(*after), True)


def test_the_zone_of_now_decides_and_within_does_not_care() -> None:
    instant = datetime(2025, 12, 31, 17, 0, tzinfo=UTC)
    assert window_bounds("this_year", instant)[0] == datetime(2025, 1, 1)
    assert window_bounds("this_year", instant.astimezone(SH))[0] == _utc(2026, 1, 1)
    assert window_bounds(timedelta(days=90), instant) == window_bounds(timedelta(days=90), instant.astimezone(SH))
    with pytest.raises(ConditionError):
        window_bounds("this_year", instant.replace(tzinfo=None))


def test_between_includes_both_days_in_the_zone() -> None:
    cond, problems = parse_condition({"orders": {"between": ["2026-01-01", "2026-03-31"], "count": {"gte": 1}}})
    assert problems == [] and cond is not None
    low, high, strict = window_bounds(cond.period, datetime(2026, 6, 1, tzinfo=SH))  # type: ignore[union-attr]
    assert (low, high, strict) == (_utc(2026, 1, 1), _utc(2026, 4, 1), True)


def test_python_counts_only_purchases_and_raises_without_orders() -> None:
    cond, _ = parse_condition({"orders": {"within": "30d", "amount": {"gte": 100}}})
    assert cond is not None and check_condition(cond, CUSTOMER_FIELDS) == []
    test = compile_predicate(cond, kinds=CUSTOMER_FIELDS)
    now = datetime(2026, 4, 2, 8, tzinfo=SH)
    placed = datetime(2026, 3, 30)
    orders = [{"placed_at": placed, "amount": Decimal("60"), "status": "paid"},
              {"placed_at": placed, "amount": Decimal("40"), "status": "partially_refunded"},
              {"placed_at": placed, "amount": Decimal("500"), "status": "refunded"}]
    assert test({"orders": orders}, now)
    assert not test({"orders": orders[:1] + orders[2:]}, now)
    with pytest.raises(ConditionError):
        test({}, now)  # a loader that forgot the orders must not read "no purchases"


def test_words_zh_and_en() -> None:
    cond, _ = parse_condition({"all": [
        {"orders": {"within": "90d", "count": {"gte": 2}}},
        {"orders": {"in": "previous_quarter", "amount": {"between": [500000, 1000000]}}},
        {"tags": {"contains": "dealer"}},
    ]})
    assert cond is not None
    assert describe_condition(cond, "zh") == "近90天订单数 ≥ 2 且 上季度订单金额 500000–1000000 且 标签包含 dealer"
    assert describe_condition(cond, "en") == ("orders in the last 90 days: count ≥ 2 and orders last quarter: "
                                              "amount between 500000 and 1000000 and tags contain dealer")


def test_a_form_field_called_orders_is_still_a_field() -> None:
    cond, problems = parse_condition({"orders": {"in": [1, 2]}})
    assert problems == [] and cond is not None
    assert check_condition(cond, {"orders": CUSTOMER_FIELDS["order_count"]}) == []
