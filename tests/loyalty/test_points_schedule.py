"""Loyalty on the product's scheduler with a fake clock: points lapse at the
start of their day (only what is left of a lot, once), the expiry reminder
(积分即将过期提醒) goes out 7 days before, tiers go up and down set-based with
a ``tier.changed`` event that a rule is triggered by, and gold members earn
double. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from sqlalchemy import select

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.models import (
    CustomerTag,
    Event,
    Journey,
    OutboxMessage,
    PointsEntry,
)

from .support import HERE, NOW, bearer, customer, ledger_sum, order, tick


def _at(text: str) -> datetime:
    """A Shanghai wall-clock time as an aware UTC instant."""
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def test_points_lapse_oldest_first_once_and_the_reminder_goes_out(app: Flask, tokens, services, clock) -> None:
    client, auth, sf = app.test_client(), bearer(tokens["till"]), services.session_factory
    zhang = customer(sf, "M001").id
    assert client.post("/api/v1/orders", json=order("B1", "50.00", placed_at="2025-03-01 09:00"),
                       headers=auth).status_code == 201
    clock.now = _at("2025-06-01 12:00")
    assert client.post("/api/v1/orders", json=order("B2", "30.00", placed_at="2025-06-01 11:00"),
                       headers=auth).status_code == 201
    assert client.post("/api/v1/points/redeem", json={"customer_id": zhang, "points": 20, "idempotency_key": "S1"},
                       headers=auth).status_code == 201  # from B1's lot: 30 of it are left
    tick(app)
    assert customer(sf, "M001").points == 60

    # The day B1's lot lapses: only its remaining 30 go, once, however often the scheduler ticks.
    clock.now = _at("2026-03-01 00:05")
    before = client.get(f"/api/v1/customers/{zhang}/points", headers=auth).get_json()
    assert before["balance"] == 30  # already not spendable today, before the tick ran
    tick(app)
    tick(app)
    with sf() as s:
        expired = s.scalars(select(PointsEntry).where(PointsEntry.kind == "expire")).all()
    assert [(e.customer_id, e.amount, e.source) for e in expired] == [(zhang, -30, "expiry")]
    zh = customer(sf, "M001")
    assert (zh.points, zh.points_expire_on.isoformat()) == (30, "2026-06-01") and ledger_sum(sf, zhang) == 30

    # 积分即将过期提醒: 7 days before B2's lot lapses, at 10:00, an SMS to the member (consented).
    clock.now = _at("2026-05-25 10:00")
    tick(app)
    tick(app)
    with sf() as s:
        journeys = s.scalars(select(Journey).where(Journey.rule_id == "points_expiry_reminder")).all()
        sent = s.scalars(select(OutboxMessage).where(OutboxMessage.customer_id == zhang,
                                                         OutboxMessage.rule_id == "points_expiry_reminder")).all()
    assert [(j.subject_id, j.period_key) for j in journeys] == [(zhang, "points_expire_on:2026-06-01")]
    assert [(m.channel, m.template_id, m.body) for m in sent] == [
        ("sms", "points_expiry_sms", "张三，您的会员积分（现有 30 分）中有部分将于 2026-06-01 到期，请尽快到店或在线兑换。退订回T")]

    # The lapse day: nothing left.
    clock.now = _at("2026-06-01 08:00")
    tick(app)
    zh = customer(sf, "M001")
    assert (zh.points, zh.points_expire_on) == (0, None) and ledger_sum(sf, zhang) == 0


def test_tiers_go_up_and_down_with_an_event_a_rule_follows(app: Flask, tokens, services, clock) -> None:
    publish_paths(services.session_factory, [*library_paths(), HERE / "rules.yaml"], now=NOW, by="test")
    client, auth, sf = app.test_client(), bearer(tokens["till"]), services.session_factory
    li, wang, zhang = (customer(sf, m).id for m in ("M002", "M003", "M001"))
    for i, amount in enumerate(("3000.00", "2200.00")):
        assert client.post("/api/v1/orders", json=order(f"L{i}", amount, member="M002", placed_at="2025-02-20 12:00"),
                           headers=auth).status_code == 201
    assert client.post("/api/v1/orders", json=order("W1", "1500.00", member="M003", placed_at="2025-02-21 12:00"),
                       headers=auth).status_code == 201
    assert client.post("/api/v1/orders", json=order("Z1", "999.99", placed_at="2025-02-21 12:00"),
                       headers=auth).status_code == 201
    # The first tick runs the latest evaluation due (today 03:00; it is 10:00).
    tick(app)
    assert (customer(sf, "M002").tier, customer(sf, "M003").tier, customer(sf, "M001").tier) == ("gold", "silver", None)
    tick(app)  # the rule on tier.changed runs on the events of the first tick
    with sf() as s:
        changes = s.scalars(select(Event).where(Event.name == "tier.changed").order_by(Event.id)).all()
        tagged = set(s.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag == "gold_member_welcomed")))
    assert sorted((e.payload["customer_id"], e.payload["from"], e.payload["to"], e.payload["direction"])
                  for e in changes) == sorted([(li, None, "gold", "up"), (wang, None, "silver", "up")])
    assert tagged == {li}

    # A gold member earns double.
    assert client.post("/api/v1/orders", json=order("L9", "10.50", member="M002", placed_at="2025-03-01 09:00"),
                       headers=auth).status_code == 201
    entries = client.get(f"/api/v1/customers/{li}/points", headers=auth).get_json()["entries"]
    assert entries[0]["points"] == 21 and entries[0]["reason"] == "pos/L9"

    # Ticking again the same day evaluates nothing again.
    tick(app)
    with sf() as s:
        assert len(s.scalars(select(Event).where(Event.name == "tier.changed")).all()) == 2

    # A year on, the February spend has left the 365-day window: both go down; 10.50 keeps nobody a tier.
    clock.now = _at("2026-02-22 03:30")
    tick(app)
    assert (customer(sf, "M002").tier, customer(sf, "M003").tier) == (None, None)
    with sf() as s:
        downs = s.scalars(select(Event).where(Event.name == "tier.changed").order_by(Event.id)).all()[2:]
    assert sorted((e.payload["customer_id"], e.payload["from"], e.payload["direction"]) for e in downs) == sorted(
        [(li, "gold", "down"), (wang, "silver", "down")])
    assert zhang not in {e.payload["customer_id"] for e in downs}
