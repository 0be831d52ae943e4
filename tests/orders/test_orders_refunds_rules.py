"""Refunds and cancellations adjust the customer's aggregates and emit
``order.refunded``; RFM segments move as orders come in; rules triggered by
``order.created`` and ``order.refunded`` act (the scheduler ticked on the fake
clock). SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Flask

from engine.automation import tick
from engine.definitions.loader import load_paths
from engine.library import library_paths

from .support import NOW, RULES, bearer, customer, events, order, tags


def _tick(services) -> None:
    definitions = load_paths([*library_paths(), RULES]).raise_for_errors()
    tick(services.session_factory, now=NOW + timedelta(minutes=1), definitions=definitions, deliver=False)


def test_refunds_and_cancel_adjust_aggregates_and_emit(app: Flask, tokens, services) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    from .test_orders_api import _check

    auth = bearer(tokens["till"])
    sf = services.session_factory
    assert client.post("/api/v1/orders", json=order("F1", amount="200.00"), headers=auth).status_code == 201
    assert client.post("/api/v1/orders", json=order("F2", amount="30.00", placed_at="2025-02-20 10:00"),
                       headers=auth).status_code == 201
    zhang = customer(sf, "M001")
    assert (zhang.order_count, zhang.total_spent) == (2, Decimal("230.00"))

    part = client.post("/api/v1/orders/pos/F1/refund", json={"amount": "50", "refund_id": "RF-1"}, headers=auth)
    assert part.status_code == 200, part.text
    _check(doc, "/orders/{source}/{external_id}/refund", "post", 200, part.get_json())
    body = part.get_json()
    assert (body["status"], body["net_amount"], body["refunded_amount"], body["applied"]) == (
        "partially_refunded", "150.00", "50.00", True)
    zhang = customer(sf, "M001")
    assert (zhang.order_count, zhang.total_spent) == (2, Decimal("180.00"))  # still counted, at its net amount
    # A retried refund (same refund_id) is applied once.
    retry = client.post("/api/v1/orders/pos/F1/refund", json={"amount": "50", "refund_id": "RF-1"}, headers=auth)
    assert retry.status_code == 200 and retry.get_json()["applied"] is False
    assert retry.get_json()["net_amount"] == "150.00"
    too_much = client.post("/api/v1/orders/pos/F1/refund", json={"amount": "150.01"}, headers=auth)
    assert too_much.status_code == 422 and too_much.get_json()["errors"][0]["field"] == "amount"
    _check(doc, "/orders/{source}/{external_id}/refund", "post", 422, too_much.get_json())

    rest = client.post("/api/v1/orders/pos/F1/refund", headers=auth)  # no body: all that is left
    assert rest.status_code == 200 and rest.get_json()["status"] == "refunded"
    assert rest.get_json()["net_amount"] == "0.00" and rest.get_json()["refunded_amount"] == "200.00"
    zhang = customer(sf, "M001")
    assert (zhang.order_count, zhang.total_spent) == (1, Decimal("30.00"))
    assert zhang.last_purchase_at.isoformat() == "2025-02-20T02:00:00"  # the refunded order no longer counts
    again = client.post("/api/v1/orders/pos/F1/refund", json={"amount": "1"}, headers=auth)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "order_refunded"
    _check(doc, "/orders/{source}/{external_id}/refund", "post", 409, again.get_json())
    assert client.post("/api/v1/orders/pos/NOPE/refund", headers=auth).status_code == 404

    cancel = client.post("/api/v1/orders/pos/F2/cancel", headers=auth)
    assert cancel.status_code == 200 and cancel.get_json()["status"] == "cancelled"
    _check(doc, "/orders/{source}/{external_id}/cancel", "post", 200, cancel.get_json())
    assert client.post("/api/v1/orders/pos/F2/cancel", headers=auth).get_json()["applied"] is False
    assert client.post("/api/v1/orders/pos/F1/cancel", headers=auth).status_code == 409
    assert client.post("/api/v1/orders/pos/F2/refund", headers=auth).status_code == 409
    zhang = customer(sf, "M001")
    assert (zhang.order_count, zhang.total_spent, zhang.last_purchase_at) == (0, Decimal("0.00"), None)
    assert zhang.rfm_segment == "prospect"

    refunded = events(sf, "order.refunded")
    assert [(e.payload["status"], e.payload["refund_amount"]) for e in refunded] == [
        ("partially_refunded", 50.0), ("refunded", 150.0), ("cancelled", 30.0)]
    assert all(e.payload["customer_id"] == zhang.id for e in refunded)


def test_rfm_segment_moves_as_orders_come_in(app: Flask, tokens, services) -> None:
    client = app.test_client()
    auth = bearer(tokens["till"])
    sf = services.session_factory
    for i, (who, day) in enumerate((("M002", "2025-02-20"), ("M003", "2025-02-21"), ("M004", "2025-02-22"),
                                    ("M005", "2025-02-23"))):
        client.post("/api/v1/orders", json=order(f"S{i}", customer={"external_id": who}, amount="100",
                                                 placed_at=f"{day} 12:00", lines=None), headers=auth)
    assert customer(sf, "M001").rfm_segment == "prospect"
    # One old, small order: the least recent, least frequent, lowest spender of five.
    client.post("/api/v1/orders", json=order("S9", amount="5", placed_at="2024-06-01 12:00", lines=None),
                headers=auth)
    zhang = customer(sf, "M001")
    assert (zhang.rfm_r, zhang.rfm_f, zhang.rfm_m, zhang.rfm_segment) == (1, 1, 1, "hibernating")
    # Three recent, large orders in one batch: now the best of five on all three scores.
    batch = [order(f"T{i}", amount="500", placed_at=f"2025-02-2{6 + i} 12:00", lines=None) for i in range(3)]
    assert client.post("/api/v1/orders/batch", json={"orders": batch}, headers=auth).status_code == 200
    zhang = customer(sf, "M001")
    assert (zhang.order_count, zhang.rfm_r, zhang.rfm_f, zhang.rfm_m) == (4, 5, 5, 5)
    assert zhang.rfm_segment == "champion" and zhang.rfm_recency_days == 0


def test_rules_on_order_events_act(app: Flask, tokens, services) -> None:
    client = app.test_client()
    auth = bearer(tokens["till"])
    sf = services.session_factory
    client.post("/api/v1/orders", json=order("E1", amount="250.00"), headers=auth)
    client.post("/api/v1/orders", json=order("E2", amount="20.00", customer={"external_id": "M002"}), headers=auth)
    client.post("/api/v1/orders/pos/E2/refund", headers=auth)
    _tick(services)
    zhang, li = customer(sf, "M001"), customer(sf, "M002")
    assert tags(sf, zhang.id) == {"big_spender"}             # order.created with amount > 100
    assert tags(sf, li.id) == {"refunded_once"}              # small order: no tag; its refund: tagged
    assert all(e.processed_at is not None for e in events(sf, "order.created"))


def test_incremental_scores_equal_ntile_over_everyone(app: Flask, tokens, services) -> None:
    """The scores written for a batch's customers are exactly NTILE(5) over all
    buyers (read here with the window query the full recompute once used),
    ties on count and spend included."""
    from sqlalchemy import Float, cast, func, select

    from engine.storage.models import Customer

    client = app.test_client()
    auth = bearer(tokens["till"])
    plan = [("M001", "30"), ("M002", "30"), ("M003", "30"), ("M004", "10"), ("M002", "5"), ("M005", "30"),
            ("M003", "0"), ("M001", "12.5")]
    for i, (who, amount) in enumerate(plan):
        body = order(f"N{i}", customer={"external_id": who}, amount=amount, lines=None,
                     placed_at=f"2025-02-{10 + i % 4:02d} 09:00")
        assert client.post("/api/v1/orders", json=body, headers=auth).status_code == 201
    c = Customer
    window = (select(c.external_id,
                     func.ntile(5).over(order_by=(c.last_purchase_at, c.id)),
                     func.ntile(5).over(order_by=(c.order_count, c.id)),
                     func.ntile(5).over(order_by=(cast(c.total_spent, Float), c.id)))
              .where(c.order_count > 0))
    with services.session_factory() as s:
        expected = {row[0]: tuple(row[1:]) for row in s.execute(window)}
        # The last order's customer was scored just now against everyone.
        got = s.execute(select(c.rfm_r, c.rfm_f, c.rfm_m).where(c.external_id == "M001")).one()
    assert tuple(got) == expected["M001"]
    # A full recompute (which every customer import ends with, here of an empty file) gives NTILE for everyone.
    import tempfile
    from pathlib import Path

    from engine.customers_import import import_customers

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.csv"
        empty.write_text("external_id\n", encoding="utf-8")
        import_customers(services.session_factory, empty, now=NOW, timezone="Asia/Shanghai")
    with services.session_factory() as s:
        stored = {row[0]: tuple(row[1:]) for row in s.execute(
            select(c.external_id, c.rfm_r, c.rfm_f, c.rfm_m).where(c.order_count > 0))}
    assert stored == expected and len(stored) == 5


def test_a_partly_refunded_order_still_counts_as_bought_since_entry(app: Flask, tokens, services) -> None:
    """``ordered_since_entry`` counts the orders the aggregates count: a
    repurchase later partly refunded is still a repurchase, so the journey
    exits instead of tagging the customer as not having bought again."""
    definitions = load_paths([*library_paths(), RULES]).raise_for_errors()
    client, auth, sf = app.test_client(), bearer(tokens["till"]), services.session_factory
    first = order("X1", amount="30.00", lines=None, discount=None, coupon_code=None, store="EXIT01",
                  placed_at="2025-03-01 09:00")
    assert client.post("/api/v1/orders", json=first, headers=auth).status_code == 201
    tick(sf, now=NOW + timedelta(minutes=1), definitions=definitions, deliver=False)  # enters, waits 2 days
    again = order("X2", amount="40.00", lines=None, discount=None, coupon_code=None, store="SH01",
                  placed_at=(NOW + timedelta(days=1)).isoformat())
    assert client.post("/api/v1/orders", json=again, headers=auth).status_code == 201
    part = client.post("/api/v1/orders/pos/X2/refund", json={"amount": "10.00", "refund_id": "R-X2"}, headers=auth)
    assert part.status_code == 200 and part.get_json()["status"] == "partially_refunded"
    tick(sf, now=NOW + timedelta(days=3), definitions=definitions, deliver=False)
    zhang = customer(sf, "M001")
    assert "no_repurchase" not in tags(sf, zhang.id)
    # The control: without the repurchase the same journey tags the customer.
    other = order("Y1", amount="30.00", lines=None, discount=None, coupon_code=None, store="EXIT01",
                  customer={"external_id": "M002"}, placed_at=(NOW + timedelta(days=3)).isoformat())
    assert client.post("/api/v1/orders", json=other, headers=auth).status_code == 201, "M002 is stored"
    tick(sf, now=NOW + timedelta(days=3, minutes=1), definitions=definitions, deliver=False)
    tick(sf, now=NOW + timedelta(days=6), definitions=definitions, deliver=False)
    assert "no_repurchase" in tags(sf, customer(sf, "M002").id)
