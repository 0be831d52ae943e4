"""Holiday O2O on a fake clock: customers in store cities get the online
coupon; redeemed in store → tagged, not redeemed → a WeCom nudge 3 days
later; a purchase ends the journey; not again within 30 days.

Members come in through the CSV import as a back-fill; the store redemption
through the till's API (``POST /api/v1/coupons/redeem``), the online purchase
through ``POST /api/v1/orders``."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

from .scenario_api import Api
from .scenario_support import Sim, import_members, local

START = date(2026, 9, 28)
MEMBERS = """external_id,name,phone,city,consent_sms,consent_wecom,timezone
O1,客户1,13800000001,上海,1,1,Asia/Shanghai
O2,客户2,13800000002,北京,1,1,Asia/Shanghai
O3,客户3,13800000003,广州,1,1,Asia/Shanghai
O4,客户4,13800000004,成都,1,1,Asia/Shanghai
O5,客户5,13800000005,上海,1,0,Asia/Shanghai
"""


def test_online_coupon_in_store_redemption(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    ids = import_members(session_factory, tmp_path / "members.csv", MEMBERS, t0)  # history seeding
    # 1 ignores the coupon, 2 redeems in store on day 1, 3 buys online on day 2 (exits),
    # 4 has no store in the city, 5 no WeCom consent.
    c1, c2, c3, c4, c5 = (ids[f"O{n}"] for n in range(1, 6))
    api = Api(db_url, tmp_path / "instance", t0)
    sim = Sim(session_factory, definitions, api=api)
    redeem_at = local(START + timedelta(days=1), time(14))
    sim.at(redeem_at, lambda: sim.redeem(c2, "holiday_o2o30", redeem_at, amount=180))
    order_at = local(START + timedelta(days=2), time(11))
    sim.at(order_at, lambda: api.order(c3, "WEB-3", 200, at=order_at, channel="online"))
    sim.days(START, 41)
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[c1] == [("o2o_coupon_sms", d(0)), ("o2o_coupon_sms", d(30)), ("o2o_store_nudge", d(3)),
                      ("o2o_store_nudge", d(33))]
    assert got[c2][:1] == [("o2o_coupon_sms", d(0))] and ("o2o_store_nudge", d(3)) not in got[c2]
    assert "o2o_redeemed" in sim.tags(c2)
    assert ("o2o_store_nudge", d(3)) not in got[c3]
    assert c4 not in got
    assert ("o2o_store_nudge", d(3)) not in got[c5]  # no WeCom consent
    assert [p for p, _ in sim.coupons(c1)] == ["holiday_o2o30", "holiday_o2o30"]
