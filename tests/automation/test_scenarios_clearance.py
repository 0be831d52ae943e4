"""Clearance on a fake clock: gold/VIP members get the Friday flash-sale coupon
(SMS at 12:00), a bundle email the next day unless they bought; once in 30 days."""

from __future__ import annotations

from datetime import date, time, timedelta

from sqlalchemy import text

from engine.storage.database import transaction

from .helpers import add_customer
from .scenario_support import Sim, local

START = date(2026, 6, 1)  # a Monday; Fridays are days 4, 11, 18, 25, 32, 39


def test_member_flash_sale_and_bundles(session_factory, definitions) -> None:
    t0 = local(START, time(8))
    with transaction(session_factory) as s:
        add_customer(s, 1, now=t0, level="gold", consents={"sms": True, "email": True})
        add_customer(s, 2, now=t0, level="vip", consents={"sms": True, "email": True})   # buys after the SMS
        add_customer(s, 3, now=t0, level="normal", consents={"sms": True, "email": True})
        add_customer(s, 4, now=t0, level="vip", consents={"sms": True, "email": True}, tags=("vip_blocked",))
        add_customer(s, 5, now=t0, level="gold", consents={"sms": True})                 # no email consent
    sim = Sim(session_factory, definitions)
    sim.days(START, 4, times=(time(9), time(12), time(18)))
    with transaction(session_factory) as s:
        s.execute(text("INSERT INTO orders (customer_id, amount, placed_at, status, created_at) "
                       "VALUES (2, 300, :at, 'paid', :at)"),
                  {"at": local(START + timedelta(days=4), time(15)).replace(tzinfo=None)})
    sim.days(START + timedelta(days=4), 37, times=(time(9), time(12), time(18)))
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[1] == [("bundle_offer", d(5)), ("bundle_offer", d(40)), ("flash_sale_sms", d(4)),
                      ("flash_sale_sms", d(39))]
    # bought after the SMS: the journey ends (no bundle email); the next one comes after once_per (30 days):
    # the Friday 28 days later (day 32) is skipped, the one on day 39 is not.
    assert got[2] == [("bundle_offer", d(40)), ("flash_sale_sms", d(4)), ("flash_sale_sms", d(39))]
    assert 3 not in got and 4 not in got
    assert got[5] == [("flash_sale_sms", d(4)), ("flash_sale_sms", d(39))]
    assert [t.time() for t in sim.sent_at(1, "flash_sale_sms")] == [time(12), time(12)]
    assert len(sim.coupons(1)) == 2
