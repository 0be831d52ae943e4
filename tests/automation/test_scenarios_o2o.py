"""Holiday O2O on a fake clock: customers in store cities get the online
coupon; redeemed in store → tagged, not redeemed → a WeCom nudge 3 days
later; a purchase ends the journey; not again within 30 days."""

from __future__ import annotations

from datetime import date, time, timedelta

from sqlalchemy import text

from engine.storage.database import transaction

from .helpers import add_customer
from .scenario_support import Sim, local

START = date(2026, 9, 28)


def test_online_coupon_in_store_redemption(session_factory, definitions) -> None:
    t0 = local(START, time(8))
    both = {"sms": True, "wecom": True}
    with transaction(session_factory) as s:
        add_customer(s, 1, now=t0, city="上海", consents=both)   # ignores the coupon
        add_customer(s, 2, now=t0, city="北京", consents=both)   # redeems in store on day 1
        add_customer(s, 3, now=t0, city="广州", consents=both)   # buys online on day 2: exits
        add_customer(s, 4, now=t0, city="成都", consents=both)   # no store in the city
        add_customer(s, 5, now=t0, city="上海", consents={"sms": True, "wecom": False})
    sim = Sim(session_factory, definitions)
    sim.days(START, 1)
    sim.redeem(2, "holiday_o2o30", local(START + timedelta(days=1), time(14)))
    with transaction(session_factory) as s:
        s.execute(text("INSERT INTO orders (customer_id, amount, placed_at, status, created_at) "
                       "VALUES (3, 200, :at, 'paid', :at)"),
                  {"at": local(START + timedelta(days=2), time(11)).replace(tzinfo=None)})
    sim.days(START + timedelta(days=1), 40)
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[1] == [("o2o_coupon_sms", d(0)), ("o2o_coupon_sms", d(30)), ("o2o_store_nudge", d(3)),
                      ("o2o_store_nudge", d(33))]
    assert got[2][:1] == [("o2o_coupon_sms", d(0))] and ("o2o_store_nudge", d(3)) not in got[2]
    assert "o2o_redeemed" in sim.tags(2)
    assert ("o2o_store_nudge", d(3)) not in got[3]
    assert 4 not in got
    assert ("o2o_store_nudge", d(3)) not in got[5]  # no WeCom consent
    assert [p for p, _ in sim.coupons(1)] == ["holiday_o2o30", "holiday_o2o30"]
