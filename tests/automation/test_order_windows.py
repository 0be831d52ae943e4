"""Order windows in rules, on a fake clock, both databases: a scheduled
audience (set-based entry), an event rule's audience (checked per customer)
and an ``if`` in a journey (the per-journey path) all read the same purchases:
paid and partly refunded orders, calendar periods in the rule's zone (Beijing).

Customers and orders come in through the product's CSV import; events through
``POST /api/v1/events``."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

from sqlalchemy import select

from engine.customers_import import import_customers
from engine.definitions.loader import load_texts
from engine.storage.models import Customer

from .scenario_api import Api
from .scenario_support import Sim, local

RULES = """\
- kind: rule
  id: frequent_buyers
  title: 近30天两单
  trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {orders: {within: 30d, count: {gte: 2}}}
  once_per: ever
  steps:
    - add_tag: frequent
- kind: rule
  id: month_spenders
  title: 本月消费满100签到
  trigger: {event: custom.checkin}
  audience:
    customer: {orders: {in: this_month, amount: {gte: 100}}}
  steps:
    - add_tag: month_spender
- kind: rule
  id: quarter_check
  title: 季度回顾
  trigger: {schedule: "0 11 * * *", timezone: Asia/Shanghai}
  audience:
    customer: {tags: {contains: member}}
  once_per: ever
  steps:
    - if: {orders: {in: this_quarter, count: {gte: 1}}}
      then:
        - add_tag: bought_this_quarter
      else:
        - if: {orders: {between: [2026-01-01, 2026-03-31], amount: {between: [50, 150]}}}
          then:
            - add_tag: small_last_quarter
"""

# Order times are Beijing time. "Today" is 2 April 2026.
CSV = """external_id,name,tags,timezone,order_id,order_amount,order_placed_at,order_status
A,甲,member,Asia/Shanghai,A1,60,2026-03-20 10:00,paid
A,,,,A2,60,2026-04-01 00:30,paid
B,乙,member,Asia/Shanghai,B1,60,2026-03-20 10:00,paid
B,,,,B2,60,2026-03-25 10:00,refunded
B,,,,B3,40,2026-03-31 23:30,partially_refunded
C,丙,member,Asia/Shanghai,C1,500,2026-02-10 10:00,paid
C,,,,C2,30,2026-04-01 09:00,cancelled
"""


def test_windows_in_audiences_events_and_ifs(session_factory, db_url: str, tmp_path: Path) -> None:
    result = load_texts([("rules.yaml", RULES)])
    assert list(result.errors) == []
    definitions = result.definitions
    t0 = local(date(2026, 4, 2), time(8))
    (tmp_path / "orders.csv").write_text(CSV, encoding="utf-8")
    assert import_customers(session_factory, tmp_path / "orders.csv", now=t0).errors == []
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}
    a, b, c = ids["A"], ids["B"], ids["C"]
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")  # published, so the event's name is known
    sim = Sim(session_factory, definitions, api=Api(db_url, tmp_path / "instance", t0, extra=(tmp_path / "rules.yaml",)))
    checkin = local(date(2026, 4, 2), time(9, 30))
    for cid in (a, b, c):
        sim.at(checkin, lambda cid=cid: sim.event("custom.checkin", cid, checkin))
    for t in (time(9), time(10), time(11), time(12)):
        sim.tick(local(date(2026, 4, 2), t))
    # A: two paid orders in 30 days; B: one paid, one refunded, one partly refunded = two purchases;
    # C: one order in 30 days is cancelled.
    assert "frequent" in sim.tags(a) and "frequent" in sim.tags(b) and "frequent" not in sim.tags(c)
    # April (Beijing): A's 00:30 order on 1 April (31 March in UTC) is 60, not 100; nobody spent 100.
    assert not any("month_spender" in sim.tags(x) for x in (a, b, c))
    # Q2 so far: A's 00:30 order counts; B's 23:30 order on 31 March is Q1.
    assert "bought_this_quarter" in sim.tags(a)
    assert "bought_this_quarter" not in sim.tags(b) and "bought_this_quarter" not in sim.tags(c)
    # Q1: B bought 60 + 40 = 100 (the refunded 60 does not count); C bought 500.
    assert "small_last_quarter" in sim.tags(b) and "small_last_quarter" not in sim.tags(c)


def test_an_event_audience_reads_this_months_orders(session_factory, db_url: str, tmp_path: Path) -> None:
    definitions = load_texts([("rules.yaml", RULES)]).definitions
    t0 = local(date(2026, 4, 20), time(8))
    (tmp_path / "orders.csv").write_text(
        "external_id,name,timezone,order_id,order_amount,order_placed_at,order_status\n"
        "M,某,Asia/Shanghai,M1,70,2026-04-01 00:10,paid\n"
        "M,,,M2,30,2026-04-19 12:00,partially_refunded\n"
        "N,某2,Asia/Shanghai,N1,99.99,2026-04-19 12:00,paid\n", encoding="utf-8")
    assert import_customers(session_factory, tmp_path / "orders.csv", now=t0).errors == []
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")  # published, so the event's name is known
    sim = Sim(session_factory, definitions, api=Api(db_url, tmp_path / "instance", t0, extra=(tmp_path / "rules.yaml",)))
    for cid in ids.values():
        sim.event("custom.checkin", cid, t0)  # POST /api/v1/events
    sim.tick(local(date(2026, 4, 20), time(8, 30)))
    assert "month_spender" in sim.tags(ids["M"]) and "month_spender" not in sim.tags(ids["N"])


EXIT_RULE = """\
kind: rule
id: nudge_until_ordered
title: 下单前提醒
trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
audience:
  customer: {tags: {contains: lead}}
once_per: ever
exit_when: {orders: {within: 2d, count: {gte: 1}}}
steps:
  - wait: 1d
  - add_tag: nudged
"""


def test_exit_when_reads_orders_placed_during_the_wait(session_factory, tmp_path: Path) -> None:
    definitions = load_texts([("rule.yaml", EXIT_RULE)]).definitions
    day = date(2026, 5, 11)
    t0 = local(day, time(8))
    (tmp_path / "leads.csv").write_text("external_id,name,tags,timezone\nX,甲,lead,Asia/Shanghai\n"
                                        "Y,乙,lead,Asia/Shanghai\n", encoding="utf-8")
    assert import_customers(session_factory, tmp_path / "leads.csv", now=t0).errors == []
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}
    sim = Sim(session_factory, definitions)
    ordered = local(day, time(15))
    (tmp_path / "order.csv").write_text("external_id,order_id,order_amount,order_placed_at\n"
                                        "X,X1,10,2026-05-11 14:00\n", encoding="utf-8")
    sim.at(ordered, lambda: import_customers(session_factory, tmp_path / "order.csv", now=ordered))
    sim.days(day, 3, times=(time(10), time(16)))
    assert "nudged" not in sim.tags(ids["X"])  # ordered during the wait: left the journey
    assert "nudged" in sim.tags(ids["Y"])
