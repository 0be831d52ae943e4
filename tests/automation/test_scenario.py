"""200 days on a fake clock with the shipped rules: who got what, when.

Ticks at fixed local times each day (the scheduler's tick), events posted
in between, coupons redeemed and orders placed along the way. Assertions
count outbox rows per customer, template and local day; invariants over all
rows check quiet hours, caps, consent and once_per for every customer,
including seeded demo customers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import tick
from engine.demo_data import seed_demo
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.models import Consent, OutboxMessage
from engine.storage.times import from_db_time

from .helpers import add_customer, add_user

SH = ZoneInfo("Asia/Shanghai")
START = date(2026, 2, 1)
TICKS = (time(9), time(9, 30), time(10), time(11), time(22, 30))
QUIET_RULES = {"winback_90d", "welcome_journey", "post_campaign_nps"}


def local(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=SH).astimezone(UTC)


def test_two_hundred_days(session_factory: sessionmaker[Session], definitions) -> None:
    t0 = local(START, time(8))
    seed_demo(session_factory, now=t0, customers=150, seed=7)
    with transaction(session_factory) as s:
        add_user(s, 900, "am_wang", t0)
        inactive = t0 - timedelta(days=100)
        add_customer(s, 1001, now=t0, last_order=inactive, consents={"sms": True, "wecom": True})  # plain win-back
        add_customer(s, 1002, now=t0, last_order=inactive, consents={"sms": True, "wecom": True})  # redeems
        add_customer(s, 1003, now=t0, last_order=inactive, consents={"sms": False, "wecom": True})  # opted out
        add_customer(s, 1004, now=t0, last_order=inactive, consents={"sms": True, "wecom": True})  # buys again
        add_customer(s, 1005, now=t0, last_order=inactive, consents={"sms": True, "wecom": False},
                     birthday=date(1990, 2, 2))  # win-back, birthday, welcome reminder: capped
        add_customer(s, 1006, now=t0, consents={"sms": True, "email": True})  # registers late at night
        add_customer(s, 1007, now=t0, contract_end=START + timedelta(days=120), account_manager_id=900)
        add_customer(s, 1008, now=t0, consents={"sms": True}, birthday=date(2004, 2, 29))  # leap-day birthday
    events = {
        (START, time(9, 30)): [("customer.registered", 1005)],
        (START + timedelta(days=5), time(22, 0)): [("customer.registered", 1006)],
    }
    actions = {
        START + timedelta(days=3): "redeem 1002",
        START + timedelta(days=2): "order 1004",
        START + timedelta(days=40): "opt_out 1001",
    }
    day = START
    while day < START + timedelta(days=200):
        for t in TICKS:
            now = local(day, t)
            with transaction(session_factory) as s:
                for (ed, et), items in events.items():
                    if ed == day and local(ed, et) <= now < local(ed, et) + timedelta(minutes=31) or \
                            (ed == day and et > TICKS[-2] and t == TICKS[-1]):
                        for name, cid in items:
                            if not s.execute(text("SELECT 1 FROM events WHERE name = :n AND subject_id = :c"),
                                             {"n": name, "c": str(cid)}).first():
                                append_event(s, name, "customer", cid, {}, now)
                if t == time(11):
                    act = actions.get(day)
                    if act == "redeem 1002":
                        s.execute(text("UPDATE coupons SET status = 'redeemed', redeemed_at = :at "
                                       "WHERE customer_id = 1002"), {"at": now.replace(tzinfo=None)})
                    elif act == "order 1004":
                        s.execute(text("UPDATE customers SET last_purchase_at = :at WHERE id = 1004"),
                                  {"at": now.replace(tzinfo=None)})
                    elif act == "opt_out 1001":
                        s.execute(text("UPDATE consents SET granted = false WHERE customer_id = 1001 "
                                       "AND channel = 'sms'"))
            tick(session_factory, now=now, definitions=definitions)
        day += timedelta(days=1)

    with session_factory() as s:
        rows = s.execute(select(OutboxMessage.customer_id, OutboxMessage.template_id, OutboxMessage.rule_id,
                                OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.created_at,
                                OutboxMessage.status, OutboxMessage.delivery_class)).all()
        consents = {(c.customer_id, c.channel): c.granted for c in s.scalars(select(Consent))}
    got: dict[int, list[tuple[str, date]]] = defaultdict(list)
    for r in rows:
        got[r.customer_id].append((r.template_id, from_db_time(r.created_at).astimezone(SH).date()))
    d = lambda n: START + timedelta(days=n)

    # Win-back on the first run, the WeCom reminder 7 days later (coupon not redeemed), not again
    # within once_per (180 days): inactive customers enter again on day 180, not before.
    # 1001 opted out of SMS on day 40, so the day-180 run no longer includes them.
    assert sorted(got[1001]) == [("winback_reminder", d(7)), ("winback_sms", d(0))]
    # 1002 redeemed the first coupon: no reminder then; the second journey's coupon is unused.
    assert sorted(got[1002]) == [("winback_reminder", d(187)), ("winback_sms", d(0)), ("winback_sms", d(180))]
    assert got[1003] == []  # no SMS consent
    # 1004 bought on day 2: the journey exited before the reminder; inactive again by day 180.
    assert sorted(got[1004]) == [("winback_reminder", d(187)), ("winback_sms", d(0)), ("winback_sms", d(180))]
    # 1005: win-back SMS day 0, birthday SMS day 1 (2 marketing SMS in 7 days), so the welcome
    # reminder due on day 3 waits until the cap's window has room (day 7), and is then sent.
    assert sorted(got[1005]) == [("birthday_sms", d(1)), ("coupon_reminder", d(7)), ("winback_sms", d(0)),
                                 ("winback_sms", d(180))]
    # Registered late at night (quiet hours): the welcome email waits for 09:00 the next morning.
    welcome = [r for r in rows if r.customer_id == 1006 and r.template_id == "welcome"]
    assert [from_db_time(r.created_at).astimezone(SH).replace(tzinfo=None) for r in welcome] == \
        [datetime.combine(d(6), time(9))]
    # Renewal: 90 days before the contract end, to the account manager, once.
    renewal = [r for r in rows if r.customer_id == 1007]
    assert [(r.template_id, r.recipient, from_db_time(r.created_at).astimezone(SH).date()) for r in renewal] == \
        [("renewal_due", "am_wang", d(30))]
    # Feb 29 birthday on Feb 28 of a common year.
    assert got[1008] == [("birthday_sms", date(2026, 2, 28))]

    # Invariants over every customer, demo ones included.
    for r in rows:
        at = from_db_time(r.created_at).astimezone(SH)
        if r.rule_id in QUIET_RULES:
            assert time(9) <= at.time() < time(21), r
        if r.delivery_class == "marketing":
            assert consents.get((r.customer_id, r.channel)) or r.customer_id == 1001, r
        assert r.status == "sent"
    per_channel: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    for r in rows:
        if r.delivery_class == "marketing":
            per_channel[(r.customer_id, r.channel)].append(r.created_at)
    for times in per_channel.values():
        times.sort()
        for i in range(len(times) - 2):
            assert times[i + 2] - times[i] > timedelta(days=7)  # at most 2 in any 7 days
    winbacks = Counter()
    for r in rows:
        if r.template_id == "winback_sms":
            winbacks[r.customer_id] += 1
    sms_days = defaultdict(list)
    for cid, items in got.items():
        sms_days[cid] = sorted(x for t, x in items if t == "winback_sms")
    for cid, days in sms_days.items():
        for a, b in pairwise(days):
            assert (b - a).days >= 180, (cid, days)
    assert sum(winbacks.values()) > 5  # the demo customers took part
