"""Property test of the ledger through the engine's services: random orders,
redemptions, refunds, cancellations and days passing (with the expiry tick)
keep the three ways the balance is kept equal (the sum of entries, the sum of
open lots, ``customers.points``), never let it go below zero, refuse a
redemption exactly when the balance is short, and spend the lot that lapses
first. SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from engine.customers_in import parse_customer, upsert_customers
from engine.definitions.loyalty import PointsPolicySpec
from engine.definitions.loader import DefinitionSet
from engine.forms.errors import ValidationFailed
from engine.loyalty.points import PointsService
from engine.loyalty.tick import loyalty_tick
from engine.orders import OrderService
from engine.storage.database import transaction
from engine.storage.models import Customer, PointsEntry

TZ = "Asia/Shanghai"
POLICY = PointsPolicySpec(id="p", title="积分", per_yuan=Decimal("1.5"), validity=timedelta(days=30))
_ids = itertools.count()

ops = st.lists(st.one_of(
    st.tuples(st.just("order"), st.integers(min_value=1, max_value=50_000),        # cents,
              st.integers(min_value=0, max_value=20)),                               # placed days ago
    st.tuples(st.just("redeem"), st.integers(min_value=1, max_value=400)),
    st.tuples(st.just("refund"), st.integers(min_value=0, max_value=9), st.integers(min_value=1, max_value=100)),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=9)),
    st.tuples(st.just("days"), st.integers(min_value=1, max_value=20)),
), min_size=1, max_size=10)


def _state(sf, cid: int) -> tuple[int, int, int, list[tuple]]:
    with sf() as s:
        total = int(s.scalar(select(func.coalesce(func.sum(PointsEntry.amount), 0))
                             .where(PointsEntry.customer_id == cid)) or 0)
        lots = s.execute(select(PointsEntry.id, PointsEntry.remaining, PointsEntry.expires_on, PointsEntry.amount)
                         .where(PointsEntry.customer_id == cid, PointsEntry.kind == "earn")).all()
        mirror = int(s.scalar(select(Customer.points).where(Customer.id == cid)) or 0)
    return total, sum(r for _, r, _, _ in lots), mirror, lots


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_ledger_invariants(session_factory, steps) -> None:
    sf = session_factory
    n = next(_ids)
    with transaction(sf) as s:
        [made] = upsert_customers(s, [parse_customer({"external_id": f"P{n}"}, timezone=TZ)],
                                  now=datetime(2025, 1, 1, tzinfo=UTC), source="test")
    cid = made.customer_id
    orders = OrderService(sf, tz=TZ, points_policy=lambda: POLICY)
    points = PointsService(sf, tz=TZ)
    # Each example on days of its own: the expiry tick claims a local day once for everyone.
    now = datetime(2025, 3, 1, 2, 0, tzinfo=UTC) + timedelta(days=400 * n)
    placed: list[str] = []
    for i, step in enumerate(steps):
        if step[0] == "order":
            ext = f"P{n}-{i}"
            [r] = orders.ingest([{"source": "prop", "external_id": ext, "customer_id": cid,
                                  "amount": f"{Decimal(step[1]) / 100:.2f}",
                                  "placed_at": (now - timedelta(days=step[2])).isoformat()}], now=now)
            assert r.outcome == "created"
            placed.append(ext)
        elif step[0] == "redeem":
            have, _, _, before = _state(sf, cid)
            try:
                points.redeem(cid, step[1], key=f"P{n}-r{i}", reason=None, now=now)
                assert have >= step[1]
            except ValidationFailed as exc:
                assert have < step[1] and exc.errors[0].code == "insufficient_points"
            # Oldest first: lots in lapse order are emptied one after the other, the last one maybe in part.
            after = {lot[0]: lot[1] for lot in _state(sf, cid)[3]}
            taken = [(r, r - after[lot_id]) for lot_id, r, _, _ in sorted(before, key=lambda x: (x[2], x[0]))]
            touched = [k for k, (_, t) in enumerate(taken) if t]
            holding = [k for k, (r, _) in enumerate(taken) if r > 0]
            assert touched == holding[:len(touched)], taken  # no lot skipped while an earlier one held points
            assert all(taken[k][1] == taken[k][0] for k in touched[:-1]), taken
        elif step[0] in ("refund", "cancel") and placed:
            ext = placed[step[1] % len(placed)]
            order = orders.get("prop", ext)
            if order["status"] in ("paid", "partially_refunded"):
                if step[0] == "cancel":
                    orders.cancel("prop", ext, now=now)
                else:
                    left = Decimal(order["net_amount"])
                    amount = max(Decimal("0.01"), (left * step[2] / 100).quantize(Decimal("0.01")))
                    orders.refund("prop", ext, amount=min(amount, left), refund_id=f"rf{i}", now=now)
        elif step[0] == "days":
            now += timedelta(days=step[1])
            loyalty_tick(sf, now=now, definitions=DefinitionSet(), tz=TZ)
        total, open_sum, mirror, lots = _state(sf, cid)
        assert total == open_sum == mirror >= 0, (step, total, open_sum, mirror)
        assert all(0 <= r <= a for _, r, _, a in lots)
        if step[0] == "days":  # the tick ran: nothing due is left open
            today = now.astimezone(ZoneInfo(TZ)).date()
            assert all(r == 0 for _, r, e, _ in lots if e is not None and e <= today)
