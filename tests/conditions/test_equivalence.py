"""THE property: SQL and Python select exactly the same rows, on both backends.

A fixed random population (NULLs, tags, consents, money, unicode text, dates
on the boundaries of ``now ± duration``, orders of every status on the edges of
each order window in the business zone) is inserted once per backend; hypothesis
then generates well-typed conditions (nested all/any/not, every operator,
segment references) and compares ``customer_where`` / ``record_where`` with the
Python predicate over the rows read back from the database.
"""

from __future__ import annotations

import os
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from engine.conditions import (
    ALLOWED_OPS,
    CUSTOMER_DEFAULTS,
    CUSTOMER_FIELDS,
    FieldKind,
    check_condition,
    compile_predicate,
    parse_condition,
)
from engine.conditions.values import iso_datetime
from engine.storage.condition_sql import customer_rows, customer_where, record_where
from engine.storage.models import Customer, Order, Record

from .conftest import EPOCH, NOW, insert_customers, insert_records

NAIVE_NOW = NOW.replace(tzinfo=None)
# Raise for a longer hunt: PROMOFLOW_CONDITION_EXAMPLES=5000 pytest tests/conditions
EXAMPLES = int(os.environ.get("PROMOFLOW_CONDITION_EXAMPLES", "300"))
TODAY = NOW.date()
DURATIONS = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "30d": timedelta(days=30), "90d": timedelta(days=90), "2w": timedelta(weeks=2)}

# Unicode, case and normalization variants: equality must be byte-exact everywhere.
TEXTS = ["张三", "李四", "上海", "北京", "Shanghai", "shanghai", "SHANGHAI", "é", "e\u0301", "ǅ", "a b", "a", "vip", "VIP", "新客", "😀", ""]
TAGS = ["vip", "VIP", "vip_blocked", "新客", "😀"]
MONEY = [Decimal(v) for v in ("0", "0.01", "-5.00", "99.99", "100", "100.01", "1200.50", "49999.99", "50000")]
INTS = [0, 1, 2, 3, 5, 10, -1]
DAY_OFFSETS = [0, 1, -1, 13, 14, 15, 29, 30, 31, 89, 90, 91, -30, -90, -91, 400, -400]
SECOND_OFFSETS = [0, 1, -1, 3600, 3599, 3601, -3600, 86399, 86400, 86401]


def date_pool() -> list[date]:
    return [TODAY + timedelta(days=d) for d in DAY_OFFSETS]


def datetime_pool() -> list[datetime]:
    out = [NAIVE_NOW + timedelta(days=d, seconds=s) for d in (0, 1, -1, 14, -14, 30, -30, 90, -90) for s in (0, 1, -1)]
    out += [NAIVE_NOW + timedelta(seconds=s) for s in SECOND_OFFSETS]
    out += [NAIVE_NOW.replace(hour=0, minute=0), NAIVE_NOW + timedelta(microseconds=500)]
    return out


DATES = date_pool()
DATETIMES = datetime_pool()

# --- order windows: purchases placed on the edges of every window -------------------
SH = ZoneInfo("Asia/Shanghai")
# Calendar windows are read in the zone of `now`: the business zone, Beijing here.
LOCAL_NOW = NOW.astimezone(SH)
STATUSES = ["paid", "paid", "partially_refunded", "refunded", "cancelled"]
ORDER_AMOUNTS = [Decimal(v) for v in ("0.01", "0.02", "99.99", "100", "100.01", "1200.50", "49999.99", "50000")]


def _local_midnight(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=SH).astimezone(UTC).replace(tzinfo=None)


def order_time_pool() -> list[datetime]:
    edges = [_local_midnight(*ymd) for ymd in (
        (2023, 12, 1), (2024, 1, 1), (2024, 12, 31), (2025, 1, 1), (2025, 3, 31), (2025, 4, 1), (2025, 5, 1),
        (2025, 6, 1), (2025, 6, 15), (2025, 6, 16), (2025, 7, 1), (2026, 1, 1))]
    edges += [datetime(2025, 4, 1), datetime(2025, 6, 1), datetime(2025, 1, 1)]  # UTC midnights: not local ones
    edges += [NAIVE_NOW - d for d in DURATIONS.values()] + [NAIVE_NOW]
    out = []
    for edge in edges:
        out += [edge, edge - timedelta(microseconds=1), edge + timedelta(seconds=1)]
    return out


ORDER_TIMES = order_time_pool()
ORDER_PERIODS = ["this_month", "previous_month", "this_quarter", "previous_quarter", "this_year", "previous_year"]
ORDER_DAYS = [date(2024, 12, 31), date(2025, 1, 1), date(2025, 3, 31), date(2025, 4, 1), date(2025, 6, 15),
              date(2025, 6, 30)]


def make_orders(customer_ids: list[int], seed: int = 41) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for cid in customer_ids:
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            rows.append({"customer_id": cid, "amount": rng.choice(ORDER_AMOUNTS), "placed_at": rng.choice(ORDER_TIMES),
                         "status": rng.choice(STATUSES), "created_at": EPOCH})
    return rows


def order_leaf() -> st.SearchStrategy:
    """`orders: {<window>, count|amount: <number test>}` over every window shape."""

    @st.composite
    def build(draw):
        kind = draw(st.sampled_from(["within", "in", "between"]))
        if kind == "within":
            window = {"within": draw(st.sampled_from(sorted(DURATIONS)))}
        elif kind == "in":
            window = {"in": draw(st.sampled_from(ORDER_PERIODS))}
        else:
            a, b = sorted([draw(st.sampled_from(ORDER_DAYS)), draw(st.sampled_from(ORDER_DAYS))])
            window = {"between": [a, b] if draw(st.booleans()) else [a.isoformat(), b.isoformat()]}
        tests = {}
        for measure in draw(st.sampled_from([["count"], ["amount"], ["count", "amount"]])):
            values = st.sampled_from([0, 1, 2, 3]) if measure == "count" else st.one_of(
                st.sampled_from(ORDER_AMOUNTS), st.sampled_from([0, Decimal("100.00"), Decimal("200.01"), 100.01]))
            op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "between", "bare"]))
            if op == "bare":
                tests[measure] = draw(values)
            elif op == "between":
                lo, hi = sorted([draw(values), draw(values)])
                tests[measure] = {"between": [lo, hi]}
            else:
                tests[measure] = {op: draw(values)}
        return {"orders": {**window, **tests}}

    return build()


def maybe(rng: random.Random, pool: list, none_rate: float = 0.25):
    return None if rng.random() < none_rate else rng.choice(pool)


def make_customers(n: int = 160, seed: int = 20250615) -> list[dict]:
    rng = random.Random(seed)
    people = []
    for _ in range(n):
        people.append(
            {
                "name": maybe(rng, TEXTS),
                "phone": maybe(rng, ["13800000000", "+8613800000000", ""]),
                "email": maybe(rng, ["a@example.com", "A@example.com", ""]),
                "gender": maybe(rng, ["f", "m", "F"]),
                "city": maybe(rng, TEXTS),
                "level": maybe(rng, ["gold", "Gold", "silver", "金卡", ""]),
                "birthday": maybe(rng, DATES),
                "contract_end": maybe(rng, DATES),
                "registered_at": maybe(rng, DATETIMES),
                "last_purchase_at": maybe(rng, DATETIMES),
                "order_count": rng.choice(INTS),
                "total_spent": rng.choice(MONEY),
                "rfm_recency_days": maybe(rng, INTS),
                "rfm_r": maybe(rng, [1, 2, 3, 4, 5]),
                "rfm_f": maybe(rng, [1, 2, 3, 4, 5]),
                "rfm_m": maybe(rng, [1, 2, 3, 4, 5]),
                "rfm_segment": maybe(rng, ["champions", "at_risk", "流失", ""]),
                "tags": rng.sample(TAGS, rng.randint(0, 3)),
                "consent": {c: rng.choice([None, True, False]) for c in ("sms", "email", "wecom")},
            }
        )
    return people


# --- condition generation -------------------------------------------------------


def operand_pool(field: str, kind: FieldKind) -> st.SearchStrategy:
    if kind is FieldKind.TEXT:
        return st.sampled_from(TEXTS + ["13800000000", "a@example.com", "gold", "Gold", "f", "champions", "流失"])
    if kind is FieldKind.NUMBER:
        return st.one_of(st.sampled_from(INTS), st.sampled_from(MONEY), st.sampled_from([0.5, 99.99, 100.0, 1200.5, 2.5]))
    if kind is FieldKind.DATE:
        return st.one_of(st.sampled_from(DATES), st.sampled_from(DATES).map(date.isoformat))
    if kind is FieldKind.DATETIME:
        return st.one_of(
            st.sampled_from(DATETIMES),
            st.sampled_from(DATETIMES).map(lambda d: d.isoformat()),
            # the same instant written in Beijing time
            st.sampled_from(DATETIMES).map(lambda d: d.replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=8)))),
            st.sampled_from(DATES),
        )
    if kind is FieldKind.BOOL:
        return st.booleans()
    return st.sampled_from(TAGS + ["wecom", "sms", "email", "store"])


def leaf(fields: dict[str, FieldKind]) -> st.SearchStrategy:
    @st.composite
    def build(draw):
        field = draw(st.sampled_from(sorted(fields)))
        kind = fields[field]
        op = draw(st.sampled_from(sorted(ALLOWED_OPS[kind])))
        values = operand_pool(field, kind)
        if op == "is_empty":
            value = draw(st.booleans())
        elif op in ("older_than", "within", "within_next"):
            value = draw(st.sampled_from(sorted(DURATIONS)))
        elif op in ("in", "not_in"):
            value = draw(st.lists(values, max_size=4))
        elif op == "between":
            a, b = draw(values), draw(values)
            value = [a, b]
        else:
            value = draw(values)
        if op == "eq" and draw(st.booleans()):
            return {field: value}  # shorthand
        return {field: {op: value}}

    return build()


def conditions(fields: dict[str, FieldKind], segment_ids: list[str], orders: bool = False) -> st.SearchStrategy:
    base = leaf(fields)
    if orders:
        base = st.one_of(base, base, order_leaf())
    if segment_ids:
        base = st.one_of(base, base, base, st.sampled_from(segment_ids).map(lambda s: {"segment": s}))
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"all": xs}),
            st.lists(inner, min_size=1, max_size=3).map(lambda xs: {"any": xs}),
            inner.map(lambda x: {"not": x}),
        ),
        max_leaves=8,
    )


def parsed_checked(raw, fields, segments=()):
    cond, problems = parse_condition(raw)
    if cond is not None:
        problems += check_condition(cond, fields, segments=segments)
    return cond, problems


SEGMENTS_RAW = {
    "vip": {"tags": {"contains": "vip"}},
    "spenders": {"all": [{"total_spent": {"gte": 100}}, {"segment": "vip"}]},
    "reachable": {"any": [{"consent.sms": True}, {"consent.wecom": True}]},
    "quarter_buyers": {"orders": {"in": "this_quarter", "count": {"gte": 1}}},
    "big_last_quarter": {"any": [{"orders": {"in": "previous_quarter", "amount": {"gte": 100}}}, {"segment": "vip"}]},
}


def test_customer_sql_matches_python(session):
    ids = insert_customers(session, make_customers())
    # History seeding for the compiler test (no product path writes arbitrary past orders).
    session.execute(insert(Order.__table__), make_orders(ids))
    session.flush()
    rows = customer_rows(session, session.scalars(select(Customer.id)), orders_since=datetime(2000, 1, 1))
    segments = {k: parsed_checked(v, CUSTOMER_FIELDS, SEGMENTS_RAW)[0] for k, v in SEGMENTS_RAW.items()}
    stats = {"nonempty": 0, "partial": 0}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw=conditions(dict(CUSTOMER_FIELDS), sorted(SEGMENTS_RAW), orders=True))
    def check(raw):
        cond, problems = parsed_checked(raw, CUSTOMER_FIELDS, SEGMENTS_RAW)
        if any(p.code == "bad_value" and "between" in p.message for p in problems):
            return  # low above high: the checker rejects it, nothing to compile
        assert problems == [], (raw, problems)
        predicate = compile_predicate(cond, segments=segments, kinds=CUSTOMER_FIELDS, defaults=CUSTOMER_DEFAULTS)
        expected = {cid for cid, row in rows.items() if predicate(row, LOCAL_NOW)}
        where = customer_where(cond, now=LOCAL_NOW, segments=segments)
        got = set(session.scalars(select(Customer.id).where(where)))
        assert got == expected, (raw, sorted(got - expected), sorted(expected - got))
        stats["nonempty"] += bool(got)
        stats["partial"] += 0 < len(got) < len(rows)

    check()
    # the generator is not degenerate: most conditions split the population
    assert stats["partial"] > 50, stats


def test_order_windows_split_the_population(session):
    """The order population is not degenerate: every window shape selects some
    customers and not all, on the edges the generator draws."""
    ids = insert_customers(session, make_customers())
    session.execute(insert(Order.__table__), make_orders(ids))  # history seeding, as above
    session.flush()
    for raw in ({"orders": {"in": p, "count": {"gte": 1}}} for p in ORDER_PERIODS):
        cond, problems = parsed_checked(raw, CUSTOMER_FIELDS)
        assert problems == []
        got = set(session.scalars(select(Customer.id).where(customer_where(cond, now=LOCAL_NOW))))
        assert 0 < len(got) < len(ids), raw


FORM = {
    "title": FieldKind.TEXT,
    "amount": FieldKind.NUMBER,
    "start": FieldKind.DATE,
    "due": FieldKind.DATETIME,
    "urgent": FieldKind.BOOL,
    "channels": FieldKind.LIST,
    "buyer.city": FieldKind.TEXT,
}


def make_records(n: int = 140, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    wrong = [None, "x", 5, 2.5, True, [], ["wecom"], {"a": 1}]  # wrong JSON types read as missing
    out = []
    for _ in range(n):
        data: dict = {}
        candidates = {
            "title": lambda: rng.choice(TEXTS),
            "amount": lambda: rng.choice([0, 1, -1, 0.1, 0.5, 2.5, 99.99, 100, 100.0, 1200.5, 50000, 49999.99]),
            "start": lambda: rng.choice(DATES).isoformat(),
            "due": lambda: iso_datetime(rng.choice(DATETIMES)),
            "urgent": lambda: rng.choice([True, False]),
            "channels": lambda: rng.sample(["wecom", "sms", "email", "store", "vip", "新客"], rng.randint(0, 3)),
        }
        for key, make in candidates.items():
            roll = rng.random()
            if roll < 0.15:
                continue  # absent
            data[key] = rng.choice(wrong) if roll < 0.25 else make()
        if rng.random() < 0.7:
            data["buyer"] = {"city": rng.choice(TEXTS)} if rng.random() < 0.8 else rng.choice(wrong)
        out.append(data)
    return out


def test_record_sql_matches_python(session):
    insert_records(session, make_records())
    rows = {r.id: r.data for r in session.scalars(select(Record))}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(raw=conditions(FORM, []))
    def check(raw):
        cond, problems = parsed_checked(raw, FORM)
        if any(p.code == "bad_value" and "between" in p.message for p in problems):
            return
        assert problems == [], (raw, problems)
        predicate = compile_predicate(cond, kinds=FORM)
        expected = {rid for rid, data in rows.items() if predicate(data, NOW)}
        where = record_where(cond, form_fields=FORM, now=NOW)
        got = set(session.scalars(select(Record.id).where(where)))
        assert got == expected, (raw, sorted(got - expected), sorted(expected - got))

    check()
