"""New-product pre-launch on a fake clock: reservations get the early-bird
coupon once, a reminder only if unused after 3 days; each poster referral
rewards the referrer."""

from __future__ import annotations

from datetime import date, time, timedelta

from engine.storage.database import transaction

from .helpers import add_customer
from .scenario_support import Sim, local

START = date(2026, 3, 2)


def test_early_bird_and_referrals(session_factory, definitions) -> None:
    t0 = local(START, time(8))
    with transaction(session_factory) as s:
        add_customer(s, 1, now=t0, tags=("launch_reserved",), consents={"sms": True})  # never redeems
        add_customer(s, 2, now=t0, tags=("launch_reserved",), consents={"sms": True})  # redeems on day 1
        add_customer(s, 3, now=t0, tags=("launch_reserved",), consents={"sms": False})  # no SMS consent
        add_customer(s, 4, now=t0, consents={"sms": True, "wecom": True})               # a referrer
        add_customer(s, 5, now=t0, consents={"sms": True})                              # did not reserve
    sim = Sim(session_factory, definitions)
    redeem_at = local(START + timedelta(days=1), time(15))
    sim.at(redeem_at, lambda: sim.redeem(2, "early_bird50", redeem_at))
    for when in (local(START + timedelta(days=2), time(11)), local(START + timedelta(days=4), time(21, 30))):
        sim.at(when, lambda when=when: sim.event("custom.referral.converted", 4, when))
    sim.days(START, 10)
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[1] == [("early_bird_reminder", d(3)), ("early_bird_sms", d(0))]
    assert got[2] == [("early_bird_sms", d(0))]
    assert 3 not in got and 5 not in got
    assert [p for p, _ in sim.coupons(1)] == ["early_bird50"]  # once ever, not every day
    assert sim.coupons(3) == [] and "early_bird" in sim.tags(1)
    # Two referrals, two rewards; the late-night one (tick at 22:00) waits for 09:00 next morning.
    assert [p for p, _ in sim.coupons(4)] == ["referral_reward20", "referral_reward20"]
    assert "referrer" in sim.tags(4)
    assert [t.time() for t in sim.sent_at(4, "referral_thanks")] == [time(12), time(9)]
