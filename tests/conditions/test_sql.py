"""SQL compilation on hand-made data, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from engine.conditions import ConditionError, FieldKind, parse_condition
from engine.storage.condition_sql import customer_row, customer_where, record_where
from engine.storage.models import Customer, Record

from .conftest import NOW, insert_customers, insert_records

NAIVE_NOW = NOW.replace(tzinfo=None)


def parsed(raw):
    cond, problems = parse_condition(raw)
    assert problems == []
    return cond


def selected(session, raw, segments=None):
    where = customer_where(parsed(raw), now=NOW, segments={k: parsed(v) for k, v in (segments or {}).items()})
    return set(session.scalars(select(Customer.id).where(where)))


@pytest.fixture
def people(session):
    insert_customers(
        session,
        [
            {  # 1
                "name": "张三", "city": "上海", "level": "gold", "total_spent": Decimal("1200.50"),
                "order_count": 5, "last_purchase_at": NAIVE_NOW - timedelta(days=120),
                "contract_end": NOW.date() + timedelta(days=30), "tags": ["vip", "新客"],
                "consent": {"sms": True, "email": False},
            },
            {  # 2
                "name": "Li", "city": "北京", "level": "", "total_spent": Decimal("99.99"),
                "order_count": 1, "last_purchase_at": NAIVE_NOW - timedelta(days=10),
                "birthday": date(1990, 6, 15), "tags": ["vip_blocked"], "consent": {"sms": False},
            },
            {  # 3: mostly empty
                "name": None, "order_count": 0, "total_spent": Decimal(0),
            },
        ],
    )
    return session


def test_examples_from_the_design(people):
    winback = {"all": [
        {"last_purchase_at": {"older_than": "90d"}},
        {"consent.sms": True},
        {"tags": {"not_contains": "vip_blocked"}},
    ]}
    assert selected(people, winback) == {1}
    assert selected(people, {"contract_end": {"within_next": "90d"}}) == {1}


@pytest.mark.parametrize(
    ("raw", "ids"),
    [
        ({"city": "上海"}, {1}),
        ({"city": {"ne": "上海"}}, {2, 3}),  # NULL city counts as "not 上海"
        ({"city": {"in": ["北京", "上海"]}}, {1, 2}),
        ({"city": {"not_in": ["北京"]}}, {1, 3}),
        ({"city": {"in": []}}, set()),
        ({"level": {"is_empty": True}}, {2, 3}),  # "" and NULL are both empty
        ({"level": {"is_empty": False}}, {1}),
        ({"total_spent": {"gt": 99.99}}, {1}),
        ({"total_spent": {"gte": 99.99}}, {1, 2}),
        ({"total_spent": {"between": [0, 100]}}, {2, 3}),
        ({"order_count": {"lt": 1}}, {3}),
        ({"last_purchase_at": {"within": "30d"}}, {2}),
        ({"last_purchase_at": {"gt": "2025-01-01"}}, {1, 2}),
        ({"last_purchase_at": {"is_empty": True}}, {3}),
        ({"birthday": "1990-06-15"}, {2}),
        ({"birthday": {"older_than": "1d"}}, {2}),
        ({"not": {"birthday": {"older_than": "1d"}}}, {1, 3}),
        ({"tags": {"contains": "新客"}}, {1}),
        ({"tags": {"is_empty": True}}, {3}),
        ({"consent.sms": False}, {2, 3}),  # no row = not granted
        ({"consent.sms": {"ne": True}}, {2, 3}),
        ({"consent.email": True}, set()),
        ({"consent.wecom": {"is_empty": True}}, set()),
        ({"any": [{"city": "北京"}, {"order_count": 0}]}, {2, 3}),
        ({"city": "上海", "level": "gold"}, {1}),
    ],
)
def test_customer_where(people, raw, ids):
    assert selected(people, raw) == ids


def test_segments_resolve_and_fail_clearly(people):
    segments = {"buyers": {"order_count": {"gte": 1}}, "vip_buyers": {"all": [{"segment": "buyers"}, {"tags": {"contains": "vip"}}]}}
    assert selected(people, {"segment": "vip_buyers"}, segments) == {1}
    with pytest.raises(ConditionError, match="unknown segment `buyer`; did you mean `buyers`"):
        selected(people, {"segment": "buyer"}, segments)
    with pytest.raises(ConditionError, match="cycle: a → b → a"):
        selected(people, {"segment": "a"}, {"a": {"segment": "b"}, "b": {"segment": "a"}})


def test_customer_row_shape(people):
    row = customer_row(people, 1)
    assert row["name"] == "张三"
    assert sorted(row["tags"]) == ["vip", "新客"]
    assert row["consent"] == {"sms": True, "email": False, "wecom": False}
    assert row["total_spent"] == Decimal("1200.50")
    with pytest.raises(LookupError):
        customer_row(people, 99)


FORM = {
    "title": FieldKind.TEXT, "budget": FieldKind.NUMBER, "start": FieldKind.DATE,
    "due": FieldKind.DATETIME, "urgent": FieldKind.BOOL, "channels": FieldKind.LIST,
}


@pytest.mark.parametrize(
    ("raw", "ids"),
    [
        ({"title": "春节促销"}, {1}),
        ({"budget": {"gt": 50000}}, {1}),
        ({"budget": {"lte": 50000}}, {2}),  # record 3 holds text in a number field: missing
        ({"budget": {"is_empty": True}}, {3, 4}),
        ({"start": {"gte": "2025-06-01"}}, {1}),
        ({"due": {"within_next": "2d"}}, {1}),
        ({"due": {"older_than": "1h"}}, {2}),
        ({"urgent": True}, {1}),
        ({"urgent": {"ne": True}}, {2, 3, 4}),
        ({"channels": {"contains": "wecom"}}, {1}),
        ({"channels": {"not_contains": "wecom"}}, {2, 3, 4}),
        ({"channels": {"is_empty": True}}, {2, 3, 4}),  # [], missing, and a string (not a list)
        ({"title": {"is_empty": True}}, {3, 4}),
    ],
)
def test_record_where(session, raw, ids):
    insert_records(
        session,
        [
            {"title": "春节促销", "budget": 80000.5, "start": "2025-06-20", "due": "2025-06-16T09:00:00",
             "urgent": True, "channels": ["wecom", "sms"]},
            {"title": "Spring", "budget": 100, "start": "2025-05-01", "due": "2025-06-15T09:00:00",
             "urgent": False, "channels": []},
            {"title": "", "budget": "lots", "channels": "wecom"},
            {},
        ],
    )
    where = record_where(parsed(raw), form_fields=FORM, now=NOW)
    assert set(session.scalars(select(Record.id).where(where))) == ids
