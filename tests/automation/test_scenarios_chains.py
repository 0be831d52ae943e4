"""Whole loops through public doors only, on a fake clock (issue 12, "Tests").

* Launch: a reservation through the form API tags its customer → the
  early-bird rule issues the coupon → a till redeems it (``POST
  /api/v1/coupons/redeem``) → the till's order arrives (``POST
  /api/v1/orders`` with the same order id and code: not redeemed twice) → the
  repeat purchase tags the customer → no reminder.
* Welcome: ``POST /api/v1/customers`` → the welcome e-mail is delivered (sent
  by the dispatcher) → the coupon comes back with an order (``POST
  /api/v1/orders`` with its code) → the 3-day reminder is not sent; a customer
  who does not redeem gets it (the control).

* Post-campaign NPS: a purchase → the invitation SMS with its survey link →
  the customer answers 3 on the public survey page → a task in the store
  manager's follow-ups → done through the tasks API. (Inbox pages, reminders
  and escalation of that task: tests/web/test_web_followups.py.)
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path

from sqlalchemy import func, select

from engine.automation import Policy
from engine.definitions.loader import load_paths
from engine.storage.models import Coupon, Customer, Event, Order, OutboxMessage, RedemptionAttempt

from .conftest import HERE, ROOT
from .scenario_api import Api
from .scenario_support import Sim, import_members, local

START = date(2026, 3, 2)
# An existing member with one recent order (a back-fill through the CSV import; not a win-back case).
MEMBERS = """external_id,name,phone,consent_sms,timezone,order_id,order_amount,order_placed_at
L1,客户1,13800000001,1,Asia/Shanghai,H-1,120,2026-02-20 10:00
"""


def test_reservation_to_till_to_repurchase(session_factory, db_url: str, tmp_path: Path) -> None:
    definitions = load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", HERE / "connectors.yaml",
                              HERE / "repurchase_rule.yaml"], relative_to=ROOT).raise_for_errors()
    t0 = local(START, time(8))
    c1 = import_members(session_factory, tmp_path / "members.csv", MEMBERS, t0)["L1"]  # history seeding
    api = Api(db_url, tmp_path / "instance", t0, {"shop": ["staff"]}, extra=(HERE / "repurchase_rule.yaml",))
    sim = Sim(session_factory, definitions, api=api)
    created = api.post("/api/v1/forms/launch_reservation/records", {"customer": c1, "product": "spring_tea"},
                       as_="shop", at=local(START, time(8, 30)))
    assert created.status_code == 201, created.json
    assert "launch_reserved" in sim.tags(c1)
    sim.days(START, 1)  # the 10:00 run issues the early-bird coupon
    [(pool, code)] = sim.coupons(c1)
    assert pool == "early_bird50" and "early_bird" in sim.tags(c1)
    assert "repurchase" not in sim.tags(c1)

    at_till = local(START + timedelta(days=1), time(15))
    # Below the pool's minimum (299): refused with the reason, nothing changes.
    low = api.post("/api/v1/coupons/redeem", {"code": code, "customer_id": c1, "order_id": "POS-77",
                                              "order_amount": "120.00", "store": "sh_xujiahui", "device": "till-01"},
                   as_="till", at=at_till)
    assert low.status_code == 422 and low.json["reason"] == "below_min_order"
    redeemed = api.redeem(code.lower(), c1, at=at_till, order_id="POS-77", amount="399.00")  # typed in lower case
    assert redeemed["code"] == code
    order = api.order(c1, "POS-77", "399.00", at=at_till + timedelta(minutes=1), coupon_code=code, store="sh_xujiahui")
    assert order["coupon_code"] == code and order["customer_id"] == c1
    sim.days(START + timedelta(days=1), 5)

    with session_factory() as s:
        coupon = s.scalars(select(Coupon).where(Coupon.code == code)).one()
        customer = s.get(Customer, c1)
        redemptions = s.scalar(select(func.count()).select_from(RedemptionAttempt)
                               .where(RedemptionAttempt.code == code, RedemptionAttempt.result == "redeemed"))
        redeemed_events = s.scalar(select(func.count()).select_from(Event).where(Event.name == "coupon.redeemed"))
        orders = s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == c1))
    assert coupon.status == "redeemed" and redemptions == 1 and redeemed_events == 1  # the till's and the order's: one redemption
    assert orders == 2 and customer.order_count == 2
    assert "repurchase" in sim.tags(c1)
    assert sim.sent()[c1] == [("early_bird_sms", START)]  # redeemed: no reminder on day 3


def test_welcome_registration_to_redemption(session_factory, definitions, db_url: str, tmp_path: Path) -> None:
    t0 = local(START, time(8))
    api = Api(db_url, tmp_path / "instance", t0)
    sim = Sim(session_factory, definitions, api=api)
    both = {"sms": {"granted": True, "source": "web"}, "email": {"granted": True, "source": "web"}}
    at = local(START, time(9, 45))
    buyer = api.customer({"phone": "13900000001", "name": "新会员甲", "email": "a@example.com", "consent": both,
                          "timezone": "Asia/Shanghai"}, at=at)
    control = api.customer({"phone": "13900000002", "name": "新会员乙", "email": "b@example.com", "consent": both,
                            "timezone": "Asia/Shanghai"}, at=at)
    again = api.post("/api/v1/customers", {"phone": "139 0000 0001", "name": "新会员甲"}, as_="till", at=at)
    assert again.status_code == 200 and again.json["id"] == buyer  # the same person: no second registration
    sim.tick(local(START, time(10)))
    with session_factory() as s:
        welcome = s.execute(select(OutboxMessage.customer_id, OutboxMessage.status, OutboxMessage.recipient)
                            .where(OutboxMessage.template_id == "welcome")).all()
    assert sorted(welcome) == sorted([(buyer, "sent", "a@example.com"), (control, "sent", "b@example.com")])
    [(pool, code)] = sim.coupons(buyer)
    assert pool == "welcome10" and "new_member" in sim.tags(buyer)
    order_at = local(START + timedelta(days=1), time(14))
    sim.at(order_at, lambda: api.order(buyer, "WEB-1", "88.00", at=order_at, coupon_code=code, channel="online"))
    sim.days(START + timedelta(days=1), 5)
    with session_factory() as s:
        assert s.scalars(select(Coupon.status).where(Coupon.code == code)).one() == "redeemed"
    got = sim.sent()
    d = lambda n: START + timedelta(days=n)
    assert got[buyer] == [("welcome", d(0))]
    assert got[control] == [("coupon_reminder", d(3)), ("welcome", d(0))]


def test_post_campaign_nps_detractor_to_store_manager_task(session_factory, definitions, db_url: str,
                                                           tmp_path: Path) -> None:
    """The survey link the NPS invitation really carried → a score of 3 on the
    public survey page → the store manager's follow-up task → done through the
    tasks API. (Inbox pages, reminders and escalation: tests/web/test_web_followups.py.)"""
    t0 = local(START, time(8))
    members = ("external_id,name,phone,tags,consent_sms,timezone\n"
               "N1,客户1,13800000001,campaign_buyer,1,Asia/Shanghai\n")
    c1 = import_members(session_factory, tmp_path / "members.csv", members, t0)["N1"]  # history seeding
    api = Api(db_url, tmp_path / "instance", t0, {"mgr_sh": ["store_manager"], "mgr_bj": ["store_manager"]})
    accounts = api.app.extensions["promoflow"].accounts
    accounts.set_store("mgr_sh", "SH001")
    accounts.set_store("mgr_bj", "BJ002")
    store = api.patch(f"/api/v1/customers/{c1}", {"attrs": {"store": "SH001"}}, as_="till", at=t0)
    assert store.status_code == 200, store.json
    policy = Policy(base_url="http://promo.test", link_secret="scenario-secret")
    sim = Sim(session_factory, definitions, policy, api=api)
    bought = local(START, time(10, 30))
    sim.at(bought, lambda: api.order(c1, "POS-N1", "260.00", at=bought, campaign="spring_sale"))
    sim.days(START, 1, times=(time(9), time(10), time(11), time(12)))
    assert sim.tags(c1) == {"campaign_buyer"}, sim.sent()
    with session_factory() as s:
        [body] = s.scalars(select(OutboxMessage.body).where(OutboxMessage.customer_id == c1,
                                                            OutboxMessage.template_id == "nps_invite_sms")).all()
    [link] = re.findall(r"http://promo\.test(/\S+)", body)

    answer_at = local(START + timedelta(days=1), time(9, 15))
    api.now = answer_at
    client = api.app.test_client()
    page = client.get(link, follow_redirects=True)
    assert page.status_code == 200, page.text
    survey_path = page.request.path
    assert survey_path.startswith("/survey/")
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    assert csrf is not None
    posted = client.post(survey_path, data={"csrf_token": csrf.group(1), "score": "3"})
    assert posted.status_code == 200
    sim.tick(local(START + timedelta(days=1), time(9, 30)))

    assert "nps_detractor" in sim.tags(c1)
    assert [t["customer_id"] for t in api.get("/api/v1/tasks", as_="mgr_bj").json["followups"]] == []
    [task] = api.get("/api/v1/tasks", as_="mgr_sh").json["followups"]
    assert (task["customer_id"], task["rule_id"], task["status"]) == (c1, "nps_detractor_followup", "open")
    done = api.post(f"/api/v1/tasks/{task['id']}/done", {"outcome": "contacted", "comment": "已回访"},
                    as_="mgr_sh", at=answer_at + timedelta(hours=2))
    assert done.status_code == 200, done.json
    assert (done.json["status"], done.json["response_seconds"]) == ("done", 2 * 3600 - 15 * 60)
    assert api.get("/api/v1/tasks", as_="mgr_sh").json["followups"] == []
    # the customer answered: the NPS journey exits, no e-mail reminder
    assert [t for t, _ in sim.sent()[c1]] == ["nps_invite_sms"]
