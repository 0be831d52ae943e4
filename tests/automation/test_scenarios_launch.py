"""New-product pre-launch on a fake clock: reservations come in through the
HTTP API and tag their customer (the form's ``on_submit``), so the early-bird
rule's audience holds them: the coupon once, a reminder only if unused after 3
days; each poster referral rewards the referrer.

Customers come in through the product's CSV import (a back-fill of existing
members); the redemption at a till and the referrals through the HTTP API."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.customers_import import import_customers
from engine.storage.models import Customer

from .scenario_api import Api
from .scenario_support import Sim, local

START = date(2026, 3, 2)
CUSTOMERS = """external_id,name,phone,consent_sms,consent_wecom,timezone
L1,客户1,13800000001,1,,Asia/Shanghai
L2,客户2,13800000002,1,,Asia/Shanghai
L3,客户3,13800000003,0,,Asia/Shanghai
L4,客户4,13800000004,1,1,Asia/Shanghai
L5,客户5,13800000005,1,,Asia/Shanghai
"""
RESERVE = "/api/v1/forms/launch_reservation/records"


def test_early_bird_and_referrals(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    (tmp_path / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    assert import_customers(session_factory, tmp_path / "customers.csv", now=t0, history=True).errors == []  # existing members: a back-fill
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}
    c1, c2, c3, c4, c5 = (ids[f"L{n}"] for n in range(1, 6))
    api = Api(db_url, tmp_path / "instance", t0, {"shop": ["staff"]})
    at = local(START, time(8, 30))
    # 1 never redeems, 2 redeems on day 1, 3 has no SMS consent; 4 (a referrer) and 5 did not reserve.
    for cid in (c1, c2, c3):
        created = api.post(RESERVE, {"customer": cid, "product": "spring_tea", "quantity": 2}, as_="shop", at=at)
        assert created.status_code == 201, created.json
    unknown = api.post(RESERVE, {"customer": 999999, "product": "spring_tea"}, as_="shop", at=at)
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json["errors"]] == ["customer"]
    sim = Sim(session_factory, definitions, api=api)
    assert {"launch_reserved"} <= sim.tags(c1) and {"launch_reserved"} <= sim.tags(c3)
    assert "launch_reserved" not in sim.tags(c5)
    redeem_at = local(START + timedelta(days=1), time(15))
    sim.at(redeem_at, lambda: sim.redeem(c2, "early_bird50", redeem_at))
    for when in (local(START + timedelta(days=2), time(11)), local(START + timedelta(days=4), time(21, 30))):
        sim.at(when, lambda when=when: sim.event("custom.referral.converted", c4, when))
    sim.days(START, 10)
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[c1] == [("early_bird_reminder", d(3)), ("early_bird_sms", d(0))]
    assert got[c2] == [("early_bird_sms", d(0))]
    assert c3 not in got and c5 not in got
    assert [p for p, _ in sim.coupons(c1)] == ["early_bird50"]  # once ever, not every day
    assert sim.coupons(c3) == [] and sim.coupons(c5) == [] and "early_bird" in sim.tags(c1)
    # Two referrals, two rewards; the late-night one (tick at 22:00) waits for 09:00 next morning.
    assert [p for p, _ in sim.coupons(c4)] == ["referral_reward20", "referral_reward20"]
    assert "referrer" in sim.tags(c4)
    assert [t.time() for t in sim.sent_at(c4, "referral_thanks")] == [time(12), time(9)]
