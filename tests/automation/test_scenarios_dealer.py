"""Dealer incentives on a fake clock with the shipped China calendar: on the
first day of a quarter dealers get their tier tag and rebate notice for what
they bought in the quarter that just ended, and the new target, sent on the
next workday (1 Oct 2026 is National Day: 8 Oct).

Customers and the orders of earlier quarters come in through the product's CSV
import as a back-fill (history=True); the new quarter's orders through ``POST
/api/v1/orders`` as they are placed. Lifetime spend no longer decides the tier."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select

from engine.customers_import import import_customers
from engine.storage.models import Customer

from .scenario_api import Api
from .scenario_support import Sim, calendar_policy, local

START = date(2026, 9, 30)
HEADER = "external_id,name,email,tags,timezone,order_id,order_amount,order_placed_at,order_status\n"

# Order times are Beijing time (the import reads them in the installation's zone).
HISTORY = HEADER + """\
D1,金牌经销商,d1@example.com,dealer,Asia/Shanghai,D1-Q2,2000000,2026-06-30 23:55,paid
D1,,,,,D1-Q3a,700000,2026-07-01 00:05,paid
D1,,,,,D1-Q3b,500000,2026-09-30 07:55,paid
D2,银牌经销商,d2@example.com,dealer,Asia/Shanghai,D2-Q3a,400000,2026-08-15 10:00,paid
D2,,,,,D2-Q3b,200000,2026-08-20 10:00,partially_refunded
D2,,,,,D2-Q3c,900000,2026-09-01 10:00,refunded
D2,,,,,D2-Q3d,300000,2026-09-02 10:00,cancelled
D3,老经销商,d3@example.com,dealer,Asia/Shanghai,D3-Q1,3000000,2026-02-10 10:00,paid
D3,,,,,D3-Q3,80000,2026-09-10 10:00,paid
C4,大客户,c4@example.com,,Asia/Shanghai,C4-Q3,2000000,2026-08-01 10:00,paid
"""
# Placed on 1 Oct before the 09:00 run: the new quarter in Beijing, still 30 Sep in UTC.
NEW_QUARTER = (("D2", "D2-Q4", 500000, time(7)), ("D3", "D3-Q4", 1000000, time(8)))


def _import(session_factory, path: Path, text: str, now: datetime) -> None:
    path.write_text(text, encoding="utf-8")
    report = import_customers(session_factory, path, now=now, timezone="Asia/Shanghai", history=True)  # a back-fill
    assert report.errors == []


def test_tiered_rebates_on_last_quarters_orders(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    _import(session_factory, tmp_path / "history.csv", HISTORY, t0)  # history seeding
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}
        lifetime = {c.external_id: c.total_spent for c in s.scalars(select(Customer))}
    assert lifetime["D3"] >= 1_000_000  # lifetime spend would make D3 gold
    api = Api(db_url, tmp_path / "instance", t0)
    sim = Sim(session_factory, definitions, calendar_policy(definitions), api=api)
    for dealer, order_id, amount, placed in NEW_QUARTER:
        when = local(START + timedelta(days=1), placed)
        sim.at(when, lambda dealer=dealer, order_id=order_id, amount=amount, when=when:
               api.order(ids[dealer], order_id, amount, at=when, channel="dealer"))
    sim.days(START, 12, times=(time(9), time(9, 30), time(15)))
    got = sim.sent()
    d1, d2, d3, c4 = ids["D1"], ids["D2"], ids["D3"], ids["C4"]
    oct8 = date(2026, 10, 8)  # 1-7 Oct holidays; the 10th (Saturday) is a make-up workday but comes later
    # D1: 700k (00:05 on 1 Jul Beijing time, still Q2 in UTC) + 500k in Q3 = gold; the Q2 2M does not count.
    assert got[d1] == [("dealer_new_target", oct8), ("rebate_gold", oct8)]
    # D2: 400k paid + 200k partly refunded = silver; refunded and cancelled orders, and Q4's, do not count.
    assert got[d2] == [("dealer_new_target", oct8), ("rebate_silver", oct8)]
    # D3: 80k last quarter; its Q1 millions and this quarter's 1M do not count.
    assert got[d3] == [("dealer_new_target", oct8)]
    assert c4 not in got
    assert "rebate_gold" in sim.tags(d1) and "rebate_silver" in sim.tags(d2) and sim.tags(d3) == {"dealer"}
    assert sim.sent_at(d1, "rebate_gold") == [datetime.combine(oct8, time(9))]
    assert START + timedelta(days=8) == oct8
