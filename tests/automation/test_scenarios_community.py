"""WeCom community on a fake clock: joining tags and welcomes once; a 7-day
sign-in streak earns a coupon, at most once a week; non-members and short
streaks get nothing."""

from __future__ import annotations

from datetime import date, time, timedelta

from engine.storage.database import transaction

from .helpers import add_customer
from .scenario_support import Sim, local

START = date(2026, 5, 11)


def test_tags_and_signin_rewards(session_factory, definitions) -> None:
    t0 = local(START, time(8))
    with transaction(session_factory) as s:
        add_customer(s, 1, now=t0, consents={"wecom": True})
        add_customer(s, 2, now=t0, consents={"wecom": False})
        add_customer(s, 3, now=t0, consents={"wecom": True})  # signs in without joining
    sim = Sim(session_factory, definitions)
    for cid in (1, 2):
        sim.event("custom.community.joined", cid, local(START, time(10)))
    sim.event("custom.community.joined", 1, local(START, time(11)))  # joins again: once ever
    sim.tick(local(START, time(12)))
    for day in range(1, 16):
        now = local(START + timedelta(days=day), time(8, 30))
        for cid in (1, 2, 3):
            sim.event("custom.community.signin", cid, now, streak=day)
        sim.tick(local(START + timedelta(days=day), time(10)))
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    # streak 7 on day 7 → reward; days 8-13 inside once_per 7d; day 14 → the second reward.
    assert got[1] == [("community_welcome", d(0)), ("signin_reward", d(7)), ("signin_reward", d(14))]
    assert 2 not in got  # no WeCom consent: tagged and rewarded, not messaged
    assert {"community_member", "signin_7d"} <= sim.tags(2)
    assert [p for p, _ in sim.coupons(2)] == ["signin_reward10", "signin_reward10"]
    assert 3 not in got and sim.coupons(3) == [] and not sim.tags(3)
