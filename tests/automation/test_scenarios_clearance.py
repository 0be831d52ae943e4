"""Clearance on a fake clock: gold/VIP members get the Friday flash-sale coupon
(SMS at 12:00), a bundle email the next day unless they bought; once in 30 days.

Members come in through the CSV import as a back-fill; the purchase through
``POST /api/v1/orders``."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

from .scenario_api import Api
from .scenario_support import Sim, import_members, local

START = date(2026, 6, 1)  # a Monday; Fridays are days 4, 11, 18, 25, 32, 39
MEMBERS = """external_id,name,phone,email,level,tags,consent_sms,consent_email,timezone
K1,客户1,13800000001,c1@example.com,gold,,1,1,Asia/Shanghai
K2,客户2,13800000002,c2@example.com,vip,,1,1,Asia/Shanghai
K3,客户3,13800000003,c3@example.com,normal,,1,1,Asia/Shanghai
K4,客户4,13800000004,c4@example.com,vip,vip_blocked,1,1,Asia/Shanghai
K5,客户5,13800000005,c5@example.com,gold,,1,,Asia/Shanghai
"""


def test_member_flash_sale_and_bundles(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    ids = import_members(session_factory, tmp_path / "members.csv", MEMBERS, t0)  # history seeding
    # 2 buys after the SMS; 4 is blocked; 5 gave no e-mail consent.
    c1, c2, c3, c4, c5 = (ids[f"K{n}"] for n in range(1, 6))
    api = Api(db_url, tmp_path / "instance", t0)
    sim = Sim(session_factory, definitions, api=api)
    order_at = local(START + timedelta(days=4), time(15))
    sim.at(order_at, lambda: api.order(c2, "POS-2", 300, at=order_at, store="sh_xujiahui"))
    sim.days(START, 41, times=(time(9), time(12), time(18)))
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[c1] == [("bundle_offer", d(5)), ("bundle_offer", d(40)), ("flash_sale_sms", d(4)),
                      ("flash_sale_sms", d(39))]
    # bought after the SMS: the journey ends (no bundle email); the next one comes after once_per (30 days):
    # the Friday 28 days later (day 32) is skipped, the one on day 39 is not.
    assert got[c2] == [("bundle_offer", d(40)), ("flash_sale_sms", d(4)), ("flash_sale_sms", d(39))]
    assert c3 not in got and c4 not in got
    assert got[c5] == [("flash_sale_sms", d(4)), ("flash_sale_sms", d(39))]
    assert [t.time() for t in sim.sent_at(c1, "flash_sale_sms")] == [time(12), time(12)]
    assert len(sim.coupons(c1)) == 2
