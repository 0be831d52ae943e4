"""Dealer incentives on a fake clock with the shipped China calendar: on the
first day of a quarter dealers get their tier tag and rebate notice and the
new target, sent on the next workday (1 Oct 2026 is National Day: 8 Oct)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from engine.storage.database import transaction

from .helpers import add_customer
from .scenario_support import Sim, calendar_policy, local

START = date(2026, 9, 30)


def test_tiered_rebates_on_workdays(session_factory, definitions) -> None:
    t0 = local(START, time(8))
    with transaction(session_factory) as s:
        add_customer(s, 1, now=t0, tags=("dealer",), total_spent=Decimal(1200000))
        add_customer(s, 2, now=t0, tags=("dealer",), total_spent=Decimal(600000))
        add_customer(s, 3, now=t0, tags=("dealer",), total_spent=Decimal(80000))
        add_customer(s, 4, now=t0, total_spent=Decimal(2000000))  # not a dealer
    sim = Sim(session_factory, definitions, calendar_policy(definitions))
    sim.days(START, 12, times=(time(9), time(9, 30), time(15)))
    got = sim.sent()
    oct8 = date(2026, 10, 8)  # 1-7 Oct holidays; the 10th (Saturday) is a make-up workday but comes later
    assert got[1] == [("dealer_new_target", oct8), ("rebate_gold", oct8)]
    assert got[2] == [("dealer_new_target", oct8), ("rebate_silver", oct8)]
    assert got[3] == [("dealer_new_target", oct8)]
    assert 4 not in got
    assert {"rebate_gold"} <= sim.tags(1) and "rebate_silver" in sim.tags(2) and not sim.tags(3) - {"dealer"}
    assert sim.sent_at(1, "rebate_gold") == [datetime.combine(oct8, time(9))]
    assert START + timedelta(days=8) == oct8
