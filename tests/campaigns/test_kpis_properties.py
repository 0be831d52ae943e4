"""Properties of the KPI statements over random histories (hypothesis), on
SQLite and PostgreSQL: a campaign never redeems more coupons than it issued;
its attributed revenue never exceeds the range's total revenue; and since
attribution gives an order to one campaign only (coupon first, then the
last touch), the campaigns' attributed revenues together never exceed it
either. And the control arm's customers who were sent a campaign message
(``control_reached``, an integrity alarm: the product must send them
nothing) are counted exactly.

Each example writes a **bulk history fixture** (customers, journeys,
messages, clicks, coupons, orders as the product stores them) in a session
that is rolled back afterwards; campaign rows and links are written by
``campaigns_repo.put``, as a publish does.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from engine.storage import campaigns_repo
from engine.storage.kpis_repo import KpiQuery, compute_raw
from engine.storage.models import (
    ClickLink,
    Coupon,
    Customer,
    Journey,
    Order,
    OutboxMessage,
)

START = datetime(2025, 3, 1)
END = datetime(2025, 4, 1)
HOURS = 24 * 40

hour = st.integers(min_value=-24 * 5, max_value=HOURS)
message = st.fixed_dictionaries({
    "customer": st.integers(0, 9), "campaign": st.sampled_from(["c1", "c2"]), "at": hour,
    "delivered": st.booleans(), "clicked": st.booleans(), "status": st.sampled_from(["sent", "sent", "dead"])})
coupon = st.fixed_dictionaries({
    "customer": st.integers(0, 9), "pool": st.sampled_from(["p1", "p2", "p3"]), "at": hour,
    "redeem_after": st.one_of(st.none(), st.integers(0, 24 * 20))})
order = st.fixed_dictionaries({
    "customer": st.integers(0, 9), "at": hour, "amount": st.integers(1, 500),
    "status": st.sampled_from(["paid", "paid", "partially_refunded", "refunded", "cancelled"]),
    "coupon": st.one_of(st.none(), st.integers(0, 30))})
member = st.fixed_dictionaries({"customer": st.integers(0, 9), "arm": st.sampled_from([None, "a", "control"])})


_NET = {"paid": Decimal(1), "partially_refunded": Decimal("0.5"), "refunded": Decimal(0), "cancelled": Decimal(0)}


def _t(hours: int) -> datetime:
    return START + timedelta(hours=hours)


def _write(s: Session, members: list, messages: list, coupons: list, orders: list) -> None:
    now = START
    s.execute(insert(Customer), [{"id": i + 1, "name": f"k{i}", "created_at": now, "updated_at": now}
                                 for i in range(10)])
    for cid, rule, pool, window in (("c1", "r1", "p1", 7), ("c2", "r2", "p2", 3)):
        campaigns_repo.put(s, {"id": cid, "title": cid, "source": "definition", "starts_on": date(2025, 3, 1),
                               "ends_on": date(2025, 3, 31), "attribution_days": window},
                           {"rule": [rule], "pool": [pool]}, now=now)
    seen: set[int] = set()
    journeys = []
    for m in members:
        if m["customer"] not in seen:
            seen.add(m["customer"])
            journeys.append({"rule_id": "r1", "rule_version": 1, "subject_type": "customer",
                             "subject_id": m["customer"] + 1, "period_key": "p", "entered_at": START,
                             "arm": m["arm"]})
    if journeys:
        s.execute(insert(Journey), journeys)
    rows = []
    for i, m in enumerate(messages):
        sent = m["status"] == "sent"
        rows.append({"id": i + 1, "channel": "sms", "recipient": "x", "idempotency_key": f"k{i}",
                     "status": m["status"], "rule_id": "r1" if m["campaign"] == "c1" else "r2",
                     "customer_id": m["customer"] + 1, "created_at": _t(m["at"]), "body": "b",
                     "sent_at": _t(m["at"]) if sent else None,
                     "delivery_status": "delivered" if sent and m["delivered"] else None,
                     "delivered_at": _t(m["at"] + 1) if sent and m["delivered"] else None})
    if rows:
        s.execute(insert(OutboxMessage), rows)
        clicks = [{"token": f"t{r['id']}", "message_id": r["id"], "url": "u", "customer_id": r["customer_id"],
                   "created_at": r["created_at"], "first_clicked_at": r["created_at"] + timedelta(hours=2)}
                  for r, m in zip(rows, messages) if m["clicked"] and r["status"] == "sent"]
        if clicks:
            s.execute(insert(ClickLink), clicks)
    if coupons:
        s.execute(insert(Coupon), [
            {"pool_id": c["pool"], "code": f"C{i}", "customer_id": c["customer"] + 1, "value": Decimal(20),
             "issued_at": _t(c["at"]), "status": "issued" if c["redeem_after"] is None else "redeemed",
             "redeemed_at": None if c["redeem_after"] is None else _t(c["at"] + c["redeem_after"])}
            for i, c in enumerate(coupons)])
    if orders:
        s.execute(insert(Order), [
            {"customer_id": o["customer"] + 1, "source": "pos", "external_id": f"o{i}", "amount": Decimal(o["amount"]),
             "net_amount": _NET[o["status"]] * Decimal(o["amount"]),
             "placed_at": _t(o["at"]), "status": o["status"], "created_at": now,
             "coupon_code": f"C{o['coupon']}" if o["coupon"] is not None and o["coupon"] < len(coupons) else None}
            for i, o in enumerate(orders)])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(member, max_size=10), messages=st.lists(message, max_size=25),
       coupons=st.lists(coupon, max_size=15), orders=st.lists(order, max_size=30))
def test_kpi_invariants(session_factory: sessionmaker[Session], members: list, messages: list, coupons: list,
                        orders: list) -> None:
    with session_factory() as s:
        try:
            _write(s, members, messages, coupons, orders)
            raws = {c: compute_raw(s, KpiQuery(c, START, END, END, window * 86400, 480, observed=END + timedelta(days=60),
                                              with_total_revenue=True))
                    for c, window in (("c1", 7), ("c2", 3))}
        finally:
            s.rollback()
    for raw in raws.values():
        assert raw.coupons_redeemed <= raw.coupons_issued
        assert raw.redeemed_customers <= raw.coupons_redeemed
        assert raw.attributed_revenue <= raw.total_revenue
        assert raw.coupon_orders + raw.message_orders == raw.attributed_orders
        assert raw.converted_customers <= raw.reached and raw.buyers >= raw.converted_customers
        assert raw.new_customers <= raw.buyers
        assert sum(a.customers for a in raw.arms) == raw.audience
        assert all(a.converted <= a.customers for a in raw.arms)
    assert raws["c1"].attributed_revenue + raws["c2"].attributed_revenue <= raws["c1"].total_revenue
    assert raws["c1"].control_reached == _reached_control(members, messages)


def _reached_control(members: list, messages: list) -> int:
    """Control customers (arm of their first journey row) sent a c1 message in the range."""
    first: dict[int, object] = {}
    for m in members:
        first.setdefault(m["customer"], m["arm"])
    control = {c for c, arm in first.items() if arm == "control"}
    return len({m["customer"] for m in messages if m["campaign"] == "c1" and m["customer"] in control
                and m["status"] == "sent" and 0 <= m["at"] < 31 * 24})
