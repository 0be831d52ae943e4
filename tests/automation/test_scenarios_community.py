"""WeCom community on a fake clock: joining tags and welcomes once; a 7-day
sign-in streak earns a coupon, at most once a week; non-members and short
streaks get nothing.

Members come in through the CSV import as a back-fill; joins and sign-ins
through ``POST /api/v1/events``."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

from .scenario_api import Api
from .scenario_support import Sim, import_members, local

START = date(2026, 5, 11)


MEMBERS = """external_id,name,phone,consent_wecom,timezone
C1,客户1,13800000001,1,Asia/Shanghai
C2,客户2,13800000002,0,Asia/Shanghai
C3,客户3,13800000003,1,Asia/Shanghai
"""


def test_tags_and_signin_rewards(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    ids = import_members(session_factory, tmp_path / "members.csv", MEMBERS, t0)  # history seeding
    c1, c2, c3 = ids["C1"], ids["C2"], ids["C3"]  # 3 signs in without joining
    sim = Sim(session_factory, definitions, api=Api(db_url, tmp_path / "instance", t0))
    for cid in (c1, c2):
        sim.event("custom.community.joined", cid, local(START, time(10)))
    sim.event("custom.community.joined", c1, local(START, time(11)))  # joins again: once ever
    sim.tick(local(START, time(12)))
    for day in range(1, 16):
        now = local(START + timedelta(days=day), time(8, 30))
        for cid in (c1, c2, c3):
            sim.event("custom.community.signin", cid, now, streak=day)
        sim.tick(local(START + timedelta(days=day), time(10)))
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    # streak 7 on day 7 → reward; days 8-13 inside once_per 7d; day 14 → the second reward.
    assert got[c1] == [("community_welcome", d(0)), ("signin_reward", d(7)), ("signin_reward", d(14))]
    assert c2 not in got  # no WeCom consent: tagged and rewarded, not messaged
    assert {"community_member", "signin_7d"} <= sim.tags(c2)
    assert [p for p, _ in sim.coupons(c2)] == ["signin_reward10", "signin_reward10"]
    assert c3 not in got and sim.coupons(c3) == [] and not sim.tags(c3)
