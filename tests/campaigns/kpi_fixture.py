"""The hand-built campaign fixture (issue 14, "Correctness"): 24 customers,
their orders, the campaign's messages, coupons, clicks, answers, follow-up
tasks and a control group. Every KPI of campaign ``fx`` is worked out by hand
in tests/campaigns/test_kpis_fixture.py.

What enters through the product's doors: customers (``POST
/api/v1/customers``), orders with their coupon codes — which redeems the
coupons at the order's moment — and a cancellation (``/api/v1/orders``), and
cost entries (``POST /api/v1/campaigns/fx/costs``).

What is written as a **bulk history fixture** (rows as the product would
have left them, because experiments and control arms have no door on this
branch and a rule run could not place each message, receipt and click at a
chosen minute): journeys with their arm, outbox messages with delivery
receipts, issued coupons, short links with their first click, feedback and
rule follow-up tasks.

All times UTC; Shanghai is UTC+8. T0 = 2025-03-02 02:00 (10:00 local).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import insert

from engine.storage.database import transaction
from engine.storage.models import (
    ClickLink,
    Coupon,
    Feedback,
    Journey,
    OutboxMessage,
    Task,
)

from .support import bearer

T0 = datetime(2025, 3, 2, 2, 0)
SENT_AT = T0 + timedelta(hours=1)            # 03:00: 11 SMS sent
DELIVERED_AT = SENT_AT + timedelta(minutes=1)  # 03:01: 9 delivered
FY_AT = datetime(2025, 3, 3, 2, 0)           # the competing campaign fy reaches c08 and c09
ARM_A = [f"c{i:02d}" for i in range(1, 13)]   # c01..c12: variant "a", messaged
CONTROL = [f"c{i:02d}" for i in range(13, 19)]  # c13..c18: the holdout, sent nothing
OTHERS = [f"c{i:02d}" for i in range(19, 25)]   # c19..c24: outside campaign fx

#: (customer, placed_at, amount, coupon?) orders posted through the orders API.
ORDERS: list[tuple[str, datetime, str, bool]] = [
    ("c01", datetime(2024, 12, 1, 2, 0), "99.00", False),   # history: c01 is not new
    ("c03", datetime(2024, 11, 1, 2, 0), "88.00", False),   # history: c03 is not new
    ("c09", datetime(2025, 3, 2, 12, 0), "40.00", False),   # touch by fx only (fy reaches c09 later)
    ("c01", datetime(2025, 3, 3, 2, 0), "120.00", True),    # coupon: redeemed after 24 h
    ("c06", datetime(2025, 3, 3, 2, 0), "60.00", False),    # within 7 d of c06's delivery
    ("c13", datetime(2025, 3, 3, 2, 0), "100.00", False),   # control, within its window
    ("c02", datetime(2025, 3, 4, 2, 0), "80.00", True),     # coupon: redeemed after 48 h
    ("c08", datetime(2025, 3, 4, 2, 0), "110.00", False),   # last touch is fy's: not fx's
    ("c10", datetime(2025, 3, 4, 2, 0), "50.00", False),    # c10 undelivered, never clicked: no touch
    ("c07", datetime(2025, 3, 4, 2, 0), "300.00", False),   # cancelled below: never counted
    ("c03", datetime(2025, 3, 5, 2, 0), "200.00", False),   # within 7 d of delivery
    ("c14", datetime(2025, 3, 5, 2, 0), "50.00", False),    # control, within its window
    ("c11", datetime(2025, 3, 6, 2, 0), "100.00", False),   # touch by click (no receipt)
    ("c04", datetime(2025, 3, 10, 2, 0), "90.00", False),   # 8 days after delivery: outside the window
    ("c15", datetime(2025, 3, 15, 2, 0), "80.00", False),   # control, outside its window
    ("c21", datetime(2025, 3, 15, 2, 0), "500.00", False),  # not in any campaign
    ("c05", datetime(2025, 3, 20, 2, 0), "150.00", True),   # coupon: counts outside the window
    ("c06", datetime(2025, 3, 25, 2, 0), "70.00", False),   # c06 again after 22 days
    ("c01", datetime(2025, 5, 20, 2, 0), "130.00", False),  # c01 again after 78 days
    ("c02", datetime(2025, 7, 10, 2, 0), "60.00", False),   # c02 again after 128 days
]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC)


def seed(app: Flask, tokens: dict[str, str], clock: Any) -> dict[str, int]:
    """Write the fixture; returns customer name → id."""
    client = app.test_client()
    ids: dict[str, int] = {}
    for name in [*ARM_A, *CONTROL, *OTHERS]:
        made = client.post("/api/v1/customers", headers=bearer(tokens["boss"]),
                           json={"external_id": name.upper(), "name": name, "phone": f"1380000{int(name[1:]):04d}"})
        assert made.status_code in (200, 201), made.text
        ids[name] = int(made.get_json()["id"])
    codes = _bulk_history(app, ids)
    for n, (who, placed, amount, with_coupon) in enumerate(ORDERS, start=1):
        clock.now = _aware(placed)  # the till redeems at the order's moment
        body: dict[str, Any] = {"source": "pos", "external_id": f"o{n:02d}", "customer_id": ids[who],
                                "amount": amount, "placed_at": _aware(placed).isoformat()}
        if with_coupon:
            body["coupon_code"] = codes[who]
        made = client.post("/api/v1/orders", headers=bearer(tokens["till"]), json=body)
        assert made.status_code == 201, made.text
    cancelled = client.post("/api/v1/orders/pos/o10/cancel", headers=bearer(tokens["till"]))
    assert cancelled.status_code == 200, cancelled.text
    clock.now = _aware(datetime(2025, 4, 1, 2, 0))
    for cost in ({"category": "labour", "amount": "800.00", "incurred_on": "2025-03-05"},
                 {"category": "media", "amount": "200.00", "incurred_on": "2025-03-10"},
                 {"category": "media", "amount": "999.00", "incurred_on": "2025-05-01"}):  # after the range
        made = client.post("/api/v1/campaigns/fx/costs", headers=bearer(tokens["fin"]), json=cost)
        assert made.status_code == 201, made.text
    return ids


def _bulk_history(app: Flask, ids: dict[str, int]) -> dict[str, str]:
    """Bulk history fixture: journeys, messages, receipts, coupons, clicks,
    feedback and tasks as the product would have stored them."""
    sf = app.extensions["promoflow"].session_factory
    codes = {who: f"FX{int(who[1:]):06d}" for who in ARM_A}
    with transaction(sf) as s:
        s.execute(insert(Journey), [
            {"rule_id": "fx_rule", "rule_version": 1, "subject_type": "customer", "subject_id": ids[who],
             "period_key": "p1", "status": "completed", "entered_at": T0, "arm": "a" if who in ARM_A else "control"}
            for who in [*ARM_A, *CONTROL]] + [
            {"rule_id": "fy_rule", "rule_version": 1, "subject_type": "customer", "subject_id": ids[who],
             "period_key": "p1", "status": "completed", "entered_at": FY_AT, "arm": None}
            for who in ("c08", "c09")])
        messages = []
        for who in ARM_A:
            row: dict[str, Any] = {
                "channel": "sms", "connector": "sms_aliyun", "recipient": f"1380000{int(who[1:]):04d}",
                "body": "会" * 60,  # 60 + 【促销通】 5 = 65 characters: one segment
                "idempotency_key": f"fx:{who}", "status": "sent", "rule_id": "fx_rule", "customer_id": ids[who],
                "template_id": "winback_sms", "created_at": T0, "sent_at": SENT_AT, "attempts": 1}
            if who in ("c01", "c02", "c03", "c04", "c05", "c06", "c07", "c08", "c09"):
                row.update(delivery_status="delivered", delivered_at=DELIVERED_AT)
            elif who == "c10":
                row.update(delivery_status="undelivered")
            elif who == "c11":
                row["body"] = "长" * 130  # 130 + 【促销通】 5 = 135 characters: 3 segments
            elif who == "c12":
                row.update(status="dead", sent_at=None)
            messages.append(row)
        for who in ("c08", "c09"):
            messages.append({
                "channel": "sms", "connector": "sms_aliyun", "recipient": f"1380000{int(who[1:]):04d}",
                "body": "fy", "idempotency_key": f"fy:{who}", "status": "sent", "rule_id": "fy_rule",
                "customer_id": ids[who], "created_at": FY_AT, "sent_at": FY_AT, "delivery_status": "delivered",
                "delivered_at": FY_AT, "attempts": 1})
        s.execute(insert(OutboxMessage), messages)
        msg_id = {who: mid for who, mid in s.execute(
            OutboxMessage.__table__.select().with_only_columns(OutboxMessage.idempotency_key, OutboxMessage.id))}
        s.execute(insert(Coupon), [
            {"pool_id": "fx_pool", "code": codes[who], "customer_id": ids[who], "value": Decimal("20.00"),
             "issued_at": T0, "expires_at": T0 + timedelta(days=30), "status": "issued"} for who in ARM_A])
        clicks = {"c01": SENT_AT + timedelta(hours=1), "c02": SENT_AT + timedelta(hours=1),
                  "c03": SENT_AT + timedelta(hours=1), "c11": SENT_AT + timedelta(hours=2)}
        s.execute(insert(ClickLink), [
            {"token": f"tok{who}", "message_id": msg_id[f"fx:{who}"], "url": "https://s.example.com/x",
             "customer_id": ids[who], "rule_id": "fx_rule", "created_at": SENT_AT, "first_clicked_at": at}
            for who, at in clicks.items()] + [
            {"token": "tokc05", "message_id": msg_id["fx:c05"], "url": "https://s.example.com/x",
             "customer_id": ids["c05"], "rule_id": "fx_rule", "created_at": SENT_AT, "first_clicked_at": None}])
        answered = datetime(2025, 3, 12, 2, 0)
        answers = [("c01", 10, "fx", None, None), ("c02", 9, "fx", None, None), ("c03", 8, "fx", None, None),
                   ("c04", 7, "fx", "fx:c04", None), ("c05", 6, "fx", None, ["物流慢", "客服态度"]),
                   ("c06", 3, "fx", None, ["物流慢"]), ("c09", 10, "fx_rule", None, None),
                   ("c08", 0, "fy", None, None)]
        s.execute(insert(Feedback), [
            {"customer_id": ids[who], "campaign": campaign, "score": score, "tags": tags, "source": "survey",
             "received_at": answered, "message_id": msg_id[reply] if reply else None,
             "dedupe_key": f"survey:{campaign}:{who}"} for who, score, campaign, reply, tags in answers])
        s.execute(insert(Task), [
            {"step_id": "s3", "status": "done", "created_at": T0, "kind": "rule", "rule_id": "fx_rule",
             "title": "回访", "response_seconds": 3600, "seq": 0, "customer_id": ids["c04"], "assignee_name": "mm"},
            {"step_id": "s3", "status": "open", "created_at": T0, "kind": "rule", "rule_id": "fx_rule",
             "title": "回访", "response_seconds": None, "seq": 0, "customer_id": ids["c05"], "assignee_name": "mm"}])
    return codes
