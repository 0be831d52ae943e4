"""The Python predicate on hand-made rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from engine.conditions import (
    CUSTOMER_DEFAULTS,
    CUSTOMER_FIELDS,
    ConditionError,
    FieldKind,
    compile_predicate,
    parse_condition,
)

NOW = datetime(2025, 6, 15, 10, 30, tzinfo=UTC)
BEIJING = timezone(timedelta(hours=8))


def holds(raw, row, kinds=CUSTOMER_FIELDS, segments=None, defaults=CUSTOMER_DEFAULTS):
    cond, problems = parse_condition(raw)
    assert problems == []
    segs = {k: parse_condition(v)[0] for k, v in (segments or {}).items()}
    return compile_predicate(cond, segments=segs, kinds=kinds, defaults=defaults)(row, NOW)


def test_dotted_fields_resolve_nested_or_flat():
    assert holds({"consent.sms": True}, {"consent": {"sms": True}})
    assert holds({"consent.sms": True}, {"consent.sms": True})
    assert not holds({"consent.sms": True}, {})
    assert holds({"consent.sms": False}, {})  # no consent = not granted
    assert not holds({"consent.sms": {"is_empty": True}}, {})


@pytest.mark.parametrize(
    ("raw", "row", "expected"),
    [
        ({"city": {"ne": "上海"}}, {"city": None}, True),
        ({"city": {"not_in": ["上海"]}}, {}, True),
        ({"city": {"in": ["上海"]}}, {}, False),
        ({"tags": {"not_contains": "vip"}}, {"tags": None}, True),
        ({"tags": {"contains": "vip"}}, {"tags": {"vip"}}, True),
        ({"tags": {"is_empty": True}}, {"tags": []}, True),
        ({"level": {"is_empty": True}}, {"level": ""}, True),
        ({"total_spent": {"gt": 0.1}}, {"total_spent": Decimal("0.10")}, False),
        ({"total_spent": {"gte": 0.1}}, {"total_spent": 0.1}, True),
        ({"total_spent": {"between": [1, 2]}}, {"total_spent": Decimal("2.00")}, True),
        ({"order_count": {"lt": 1}}, {"order_count": None}, False),
        ({"not": {"order_count": {"lt": 1}}}, {"order_count": None}, True),
        # relative dates: exactly on the bound counts for `within`, not for `older_than`
        ({"last_purchase_at": {"older_than": "90d"}}, {"last_purchase_at": datetime(2025, 3, 17, 10, 30)}, False),
        ({"last_purchase_at": {"older_than": "90d"}}, {"last_purchase_at": datetime(2025, 3, 17, 10, 29, 59)}, True),
        ({"last_purchase_at": {"within": "90d"}}, {"last_purchase_at": datetime(2025, 3, 17, 18, 30, tzinfo=BEIJING)}, True),
        ({"last_purchase_at": {"within": "1d"}}, {"last_purchase_at": datetime(2025, 6, 15, 10, 31)}, False),
        ({"contract_end": {"within_next": "90d"}}, {"contract_end": date(2025, 9, 13)}, True),
        ({"contract_end": {"within_next": "90d"}}, {"contract_end": date(2025, 9, 14)}, False),
        ({"contract_end": {"within_next": "90d"}}, {"contract_end": date(2025, 6, 14)}, False),
        ({"birthday": {"gte": "2000-01-01"}}, {"birthday": date(2000, 1, 1)}, True),
        ({"registered_at": {"lt": "2025-06-15T18:00:00+08:00"}}, {"registered_at": datetime(2025, 6, 15, 9, 59)}, True),
    ],
)
def test_semantics(raw, row, expected):
    assert holds(raw, row) is expected


def test_segments_and_their_errors():
    segments = {"big": {"total_spent": {"gte": 100}}, "big_vip": {"all": [{"segment": "big"}, {"tags": {"contains": "vip"}}]}}
    assert holds({"segment": "big_vip"}, {"total_spent": 100, "tags": ["vip"]}, segments=segments)
    with pytest.raises(ConditionError, match="unknown segment `bgi`; did you mean `big`"):
        holds({"segment": "bgi"}, {}, segments=segments)
    with pytest.raises(ConditionError, match="cycle: a → a"):
        holds({"segment": "a"}, {}, segments={"a": {"any": [{"segment": "a"}, {"x": 1}]}})


def test_record_data_as_stored_in_json():
    form = {"due": FieldKind.DATETIME, "start": FieldKind.DATE, "amount": FieldKind.NUMBER, "title": FieldKind.TEXT}
    row = {"due": "2025-06-16T09:00:00", "start": "2025-06-20", "amount": "lots", "title": 5}
    assert holds({"due": {"within_next": "1d"}}, row, kinds=form, defaults=None)
    assert holds({"start": {"gt": "2025-06-19"}}, row, kinds=form, defaults=None)
    # values of the wrong type read as missing, as in SQL
    assert holds({"amount": {"is_empty": True}}, row, kinds=form, defaults=None)
    assert holds({"title": {"is_empty": True}}, row, kinds=form, defaults=None)
    assert holds({"due": {"is_empty": True}}, {"due": "tomorrow"}, kinds=form, defaults=None)


def test_without_kinds_the_operand_decides():
    assert holds({"budget": {"gt": 50000}}, {"budget": 60000}, kinds=None)
    assert holds({"d": {"older_than": "1d"}}, {"d": date(2025, 1, 1)}, kinds=None)
    assert holds({"d": {"older_than": "1d"}}, {"d": datetime(2025, 1, 1)}, kinds=None)
    assert not holds({"d": {"gt": "2025-01-01"}}, {"d": "soon"}, kinds=None)
