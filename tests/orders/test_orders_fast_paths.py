"""The batch path's shortcuts give what the plain path gives: the quintile
boundaries read by keyset chaining equal NTILE(5) over every buyer (many
customers, many ties, several batches), and a line price already written as
money is taken as is only when the Decimal round trip would write it so."""

from __future__ import annotations

import random
from decimal import Decimal
from zoneinfo import ZoneInfo

from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Float, cast, func, select

from engine.customers_import import import_customers
from engine.orders import parse_order
from engine.storage.models import Customer

from .support import NOW, bearer


def _ntile(session) -> dict[str, tuple[int, int, int]]:  # noqa: ANN001
    c = Customer
    window = (select(c.external_id,
                     func.ntile(5).over(order_by=(c.last_purchase_at, c.id)),
                     func.ntile(5).over(order_by=(c.order_count, c.id)),
                     func.ntile(5).over(order_by=(cast(c.total_spent, Float), c.id)))
              .where(c.order_count > 0))
    return {row[0]: tuple(row[1:]) for row in session.execute(window)}


def test_batch_scores_equal_ntile_with_many_ties(app: Flask, tokens, services, tmp_path) -> None:
    # 80 more members, seeded as a history back-fill through the product's CSV import.
    csv_path = tmp_path / "more.csv"
    csv_path.write_text("external_id,name\n" + "".join(f"K{i:03d},会员{i}\n" for i in range(80)), encoding="utf-8")
    import_customers(services.session_factory, csv_path, now=NOW, timezone="Asia/Shanghai", history=True)
    client = app.test_client()
    rng = random.Random(20260302)
    members = [f"K{i:03d}" for i in range(80)]
    n = 0
    for batch in range(4):
        bodies = []
        for _ in range(rng.randint(20, 60)):
            n += 1
            bodies.append({"source": "pos", "external_id": f"T{n}", "customer": {"external_id": rng.choice(members)},
                           "amount": rng.choice(["10.00", "10.00", "25.50", "99"]),  # ties on spend
                           "placed_at": f"2025-02-{rng.choice([3, 10, 10, 20]):02d} 09:00"})  # ties on recency
        answer = client.post("/api/v1/orders/batch", json={"orders": bodies}, headers=bearer(tokens["till"]))
        assert answer.status_code == 200 and answer.get_json()["counts"]["created"] == len(bodies), answer.text
        touched = {b["customer"]["external_id"] for b in bodies}
        with services.session_factory() as s:
            expected = _ntile(s)
            got = {row[0]: tuple(row[1:]) for row in s.execute(
                select(Customer.external_id, Customer.rfm_r, Customer.rfm_f, Customer.rfm_m)
                .where(Customer.external_id.in_(touched)))}
        assert got == {k: expected[k] for k in touched}, f"batch {batch}"
    assert len(expected) > 40  # enough buyers for quintiles of several rows each


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[0-9]{1,12}(\.[0-9]{1,2})?", fullmatch=True))
def test_line_price_is_the_decimal_round_trip(price: str) -> None:
    body = {"source": "pos", "external_id": "P1", "customer": {"external_id": "M001"},
            "lines": [{"sku": "A", "quantity": 1, "unit_price": price}], "placed_at": "2025-02-01 09:00"}
    parsed = parse_order(body, ZoneInfo("Asia/Shanghai"), NOW)
    assert parsed.lines[0]["unit_price"] == str(Decimal(price).quantize(Decimal("0.01")))


_TEXTS = [None, "", " ", "S01", " S01 ", "门店", "x" * 65, "y" * 129, 7]
_MONEY = [None, "", "10", "10.5", "010.50", "0.00", "5.00", "1.234", "-1", "abc", "1,000.00", " 12.00", 12, 1.5, True]
#: Field → values to put in its place (well-formed and not), one or two fields of a usual order at a time.
_CHANGES = {
    "source": ["pos", " pos", "p/s", "", None, 7], "external_id": ["O1", "O 1", "", None, 12, "x" * 129],
    "customer": [{"external_id": v} for v in ["C1", " C1 ", "", "  ", None, 5, "c" * 129]]
    + [{"external_id": "C1", "phone": "13800000001"}, {"id": 3}, "C1", None],
    "customer_id": [None, 3], "colour": ["red"],
    "lines": [None, [], [{"sku": "A", "quantity": 1}], [{"sku": "B 1", "quantity": 1, "unit_price": "1"}],
              [{"sku": "A", "quantity": 0, "unit_price": "1"}], [{"sku": "A", "unit_price": "3"}],
              *[[{"sku": "A", "quantity": 2, "unit_price": m}] for m in _MONEY]],
    "amount": _MONEY, "discount": _MONEY, "refunded_amount": [None, "0.00", "1.00"],
    "placed_at": ["2025-02-01 09:00", "2025/02/01T09:00:00Z", "2025-02-01T01:00:00+08:00", "", "yesterday", None, 5],
    "store": _TEXTS, "channel": _TEXTS, "campaign": _TEXTS, "coupon_code": _TEXTS,
    "status": [None, "", "paid", "refunded", "cancelled", "lost"],
}


@st.composite
def _bodies(draw) -> dict:  # noqa: ANN001
    body = {"source": "pos", "external_id": "O1", "customer": {"external_id": "C1"}, "amount": "20.00",
            "discount": "5.00", "lines": [{"sku": "A", "name": "咖啡豆", "quantity": 2, "unit_price": "12.50"}],
            "placed_at": "2025-02-01 09:00", "store": "S01", "channel": "store"}
    for name in draw(st.lists(st.sampled_from(sorted(_CHANGES)), max_size=2)):
        value = draw(st.sampled_from(_CHANGES[name]))
        if value is None and draw(st.booleans()):
            body.pop(name, None)  # left out rather than null
        else:
            body[name] = value
    return body


@settings(max_examples=400, deadline=None)
@given(_bodies())
def test_common_order_reading_equals_the_field_by_field_one(body: dict) -> None:
    from types import MappingProxyType

    from engine.forms.errors import ValidationFailed
    from engine.orders import _parse_common

    tz = ZoneInfo("Asia/Shanghai")
    quick = _parse_common(body, tz)
    if quick is None:
        return
    try:
        plain = parse_order(MappingProxyType(body), tz, NOW)  # not a dict: read field by field
    except ValidationFailed as exc:
        raise AssertionError(f"the quick reading took an invalid order: {exc.errors}") from None
    assert quick == plain and repr(quick) == repr(plain)  # repr: 5.00 is not written 5


def test_the_usual_order_takes_the_common_reading() -> None:
    from engine.orders import _parse_common

    body = {"source": "pos", "external_id": "O1", "customer": {"external_id": "C1"}, "amount": "20.00",
            "discount": "5.00", "lines": [{"sku": "A", "name": "咖啡豆", "quantity": 2, "unit_price": "12.50"}],
            "placed_at": "2025-02-01 09:00", "store": "S01", "channel": "store", "coupon_code": None}
    assert _parse_common(body, ZoneInfo("Asia/Shanghai")) == parse_order(body, ZoneInfo("Asia/Shanghai"), NOW)
    assert _parse_common(body, ZoneInfo("Asia/Shanghai")) is not None
