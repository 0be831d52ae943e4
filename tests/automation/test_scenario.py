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
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.automation import tick
from engine.demo_data import seed_demo
from engine.storage.models import Consent, OutboxMessage
from engine.storage.times import from_db_time

from .scenario_api import Api
from .scenario_support import import_members

SH = ZoneInfo("Asia/Shanghai")
START = date(2026, 2, 1)
TICKS = (time(9), time(9, 30), time(10), time(11), time(22, 30))
QUIET_RULES = {"winback_90d", "welcome_journey", "post_campaign_nps"}
INACTIVE = "2025-10-24 08:00"  # 100 days before START, Beijing time
# Existing members (a back-fill through the CSV import, history=True: nothing emitted or sent).
MEMBERS = f"""external_id,name,phone,email,birthday,contract_end,consent_sms,consent_wecom,timezone,order_id,order_amount,order_placed_at
W1001,客户1001,13800001001,c1001@example.com,,,1,1,Asia/Shanghai,H-1001,100,{INACTIVE}
W1002,客户1002,13800001002,c1002@example.com,,,1,1,Asia/Shanghai,H-1002,100,{INACTIVE}
W1003,客户1003,13800001003,c1003@example.com,,,0,1,Asia/Shanghai,H-1003,100,{INACTIVE}
W1004,客户1004,13800001004,c1004@example.com,,,1,1,Asia/Shanghai,H-1004,100,{INACTIVE}
W1007,客户1007,13800001007,c1007@example.com,,2026-06-01,,,Asia/Shanghai,,,
W1008,客户1008,13800001008,c1008@example.com,2004-02-29,,1,,Asia/Shanghai,,,
"""


def local(d: date, t: time) -> datetime:
    return datetime.combine(d, t, tzinfo=SH).astimezone(UTC)


def test_two_hundred_days(session_factory: sessionmaker[Session], definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    seed_demo(session_factory, now=t0, customers=150, seed=7)  # the product's demo data: history seeding
    api = Api(db_url, tmp_path / "instance", t0, {"am_wang": ["account_manager"]})
    ids = import_members(session_factory, tmp_path / "members.csv", MEMBERS, t0)
    # 1001 plain win-back (opts out of SMS on day 40), 1002 redeems, 1003 opted out of SMS, 1004 buys again,
    # 1007 a B2B renewal, 1008 a leap-day birthday; 1005 and 1006 register through the API below.
    c1001, c1002, c1003, c1004, c1007, c1008 = (ids[f"W{n}"] for n in (1001, 1002, 1003, 1004, 1007, 1008))
    assert START + timedelta(days=120) == date(2026, 6, 1)
    # The CRM assigns the B2B customer's account manager through the customers API.
    assigned = api.patch(f"/api/v1/customers/{c1007}", {"account_manager": "am_wang"}, as_="till", at=t0)
    assert assigned.status_code == 200 and assigned.json["account_manager"] == "am_wang", assigned.json
    registered: dict[str, int] = {}

    def register_1005(now: datetime) -> None:
        # Win-back, birthday and welcome reminder: capped. Registers with an old order from the shop's past.
        registered["1005"] = api.customer({"external_id": "W1005", "name": "客户1005", "phone": "13800001005",
                                           "birthday": "1990-02-02", "timezone": "Asia/Shanghai",
                                           "consent": {"sms": {"granted": True, "source": "pos"},
                                                       "wecom": {"granted": False, "source": "pos"}}}, at=now)
        api.order(registered["1005"], "H-1005", 100, at=now, placed_at=datetime(2025, 10, 24, 8, tzinfo=SH))

    def register_1006(now: datetime) -> None:  # registers late at night
        registered["1006"] = api.customer({"external_id": "W1006", "name": "客户1006", "phone": "13800001006",
                                           "email": "c1006@example.com", "timezone": "Asia/Shanghai",
                                           "consent": {"sms": {"granted": True, "source": "web"},
                                                       "email": {"granted": True, "source": "web"}}}, at=now)

    def redeem_1002(now: datetime) -> None:  # the win-back coupon at a till
        with session_factory() as s:
            code = s.scalar(text("SELECT code FROM coupons WHERE customer_id = :c"), {"c": c1002})
        api.redeem(code, c1002, at=now, order_id="POS-1002", amount=150)

    def order_1004(now: datetime) -> None:
        api.order(c1004, "POS-1004", 100, at=now)

    def opt_out_1001(now: datetime) -> None:
        answer = api.patch(f"/api/v1/customers/{c1001}", {"consent": {"sms": {"granted": False, "source": "sms_reply"}}},
                           as_="till", at=now)
        assert answer.status_code == 200, answer.json

    actions = {
        (START, time(9, 30)): register_1005,
        (START + timedelta(days=5), time(22, 30)): register_1006,
        (START + timedelta(days=3), time(11)): redeem_1002,
        (START + timedelta(days=2), time(11)): order_1004,
        (START + timedelta(days=40), time(11)): opt_out_1001,
    }
    day = START
    while day < START + timedelta(days=200):
        for t in TICKS:
            now = local(day, t)
            if (day, t) in actions:
                actions[(day, t)](now)
            tick(session_factory, now=now, definitions=definitions)
        day += timedelta(days=1)
    c1005, c1006 = registered["1005"], registered["1006"]

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
    assert sorted(got[c1001]) == [("winback_reminder", d(7)), ("winback_sms", d(0))]
    # 1002 redeemed the first coupon: no reminder then; the second journey's coupon is unused.
    assert sorted(got[c1002]) == [("winback_reminder", d(187)), ("winback_sms", d(0)), ("winback_sms", d(180))]
    assert got[c1003] == []  # no SMS consent
    # 1004 bought on day 2: the journey exited before the reminder; inactive again by day 180.
    assert sorted(got[c1004]) == [("winback_reminder", d(187)), ("winback_sms", d(0)), ("winback_sms", d(180))]
    # 1005: win-back SMS day 0, birthday SMS day 1 (2 marketing SMS in 7 days), so the welcome
    # reminder due on day 3 waits until the cap's window has room (day 7), and is then sent.
    assert sorted(got[c1005]) == [("birthday_sms", d(1)), ("coupon_reminder", d(7)), ("winback_sms", d(0)),
                                 ("winback_sms", d(180))]
    # Registered late at night (quiet hours): the welcome email waits for 09:00 the next morning.
    welcome = [r for r in rows if r.customer_id == c1006 and r.template_id == "welcome"]
    assert [from_db_time(r.created_at).astimezone(SH).replace(tzinfo=None) for r in welcome] == \
        [datetime.combine(d(6), time(9))]
    # Renewal: 90 days before the contract end, to the account manager, once.
    renewal = [r for r in rows if r.customer_id == c1007]
    assert [(r.template_id, r.recipient, from_db_time(r.created_at).astimezone(SH).date()) for r in renewal] == \
        [("renewal_due", "am_wang", d(30))]
    # Feb 29 birthday on Feb 28 of a common year.
    assert got[c1008] == [("birthday_sms", date(2026, 2, 28))]

    # Invariants over every customer, demo ones included.
    for r in rows:
        at = from_db_time(r.created_at).astimezone(SH)
        if r.rule_id in QUIET_RULES:
            assert time(9) <= at.time() < time(21), r
        if r.delivery_class == "marketing":
            assert consents.get((r.customer_id, r.channel)) or r.customer_id == c1001, r
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
