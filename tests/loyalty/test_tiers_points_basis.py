"""Tiers on ``basis: points``: the points earned in the window (orders and
rules, less what refunds took back) set the tier; spending does not lower it;
upgrades and downgrades come out of one evaluation with their events.
Through the engine's services on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from engine.customers_in import parse_customer, upsert_customers
from engine.definitions.loyalty import PointsPolicySpec, TierLevel, TierSpec
from engine.loyalty.points import PointsService
from engine.loyalty.tiers import evaluate
from engine.orders import OrderService
from engine.storage.database import transaction
from engine.storage.models import Customer, Event

TZ = "Asia/Shanghai"
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
POLICY = PointsPolicySpec(id="p", title="积分", per_yuan=Decimal(1), validity=timedelta(days=365))
TIERS = TierSpec(id="t", title="等级", basis="points", window=timedelta(days=90),
                 levels=(TierLevel("silver", "银卡", Decimal(100)), TierLevel("gold", "金卡", Decimal(500))))


def test_points_basis(session_factory) -> None:
    sf = session_factory
    with transaction(sf) as s:
        made = upsert_customers(s, [parse_customer({"external_id": x}, timezone=TZ) for x in ("A", "B", "C")],
                                now=NOW, source="test")
    a, b, c = (m.customer_id for m in made)
    orders = OrderService(sf, tz=TZ, points_policy=lambda: POLICY)
    for ext, cid, amount in (("o1", a, "600.00"), ("o2", b, "150.00"), ("o3", c, "99.00")):
        assert orders.ingest([{"source": "t", "external_id": ext, "customer_id": cid, "amount": amount,
                               "placed_at": NOW.isoformat()}], now=NOW)[0].outcome == "created"
    PointsService(sf, tz=TZ).redeem(a, 550, key="spend", reason=None, now=NOW)  # spending keeps the tier
    orders.refund("t", "o2", amount=Decimal("100.00"), refund_id="r", now=NOW)  # B keeps 50 earned
    with transaction(sf) as s:
        assert (evaluate(s, TIERS, now=NOW).upgraded, evaluate(s, TIERS, now=NOW).upgraded) == (1, 0)
    with sf() as s:
        tiers = dict(s.execute(select(Customer.id, Customer.tier).where(Customer.id.in_([a, b, c]))).all())
    assert tiers == {a: "gold", b: None, c: None}
    later = NOW + timedelta(days=91)  # the window has moved past the order
    with transaction(sf) as s:
        report = evaluate(s, TIERS, now=later)
    assert (report.upgraded, report.downgraded) == (0, 1)
    with sf() as s:
        events = [e.payload for e in s.scalars(select(Event).where(Event.name == "tier.changed").order_by(Event.id))]
    assert [(p["customer_id"], p["from"], p["to"], p["direction"]) for p in events] == [
        (a, None, "gold", "up"), (a, "gold", None, "down")]
