"""A redemption through the API is what journeys see: the shipped win-back
rule's ``if: {coupon_redeemed: winback20}`` takes the redeemed path for the
customer who redeemed at the till, and the other path for the one who did
not. Driven by the product's scheduler tick on a fake clock; nothing here
writes a coupon's state."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from coupon_support import codes, run_days, seed_customer
from flask import Flask
from sqlalchemy import select
from web_support import NOW, PASSWORD, bearer

from engine.storage.models import OutboxMessage


def _sent(app: Flask) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    with app.extensions["promoflow"].session_factory() as s:
        for cid, template in s.execute(select(OutboxMessage.customer_id, OutboxMessage.template_id)
                                       .order_by(OutboxMessage.id)):
            out[cid].append(template)
    return out


def test_winback_takes_the_redeemed_branch_after_an_api_redemption(app: Flask, clock) -> None:
    both = {"sms": True, "wecom": True}
    inactive = NOW - timedelta(days=100)
    # history: two lapsed customers, as an import would leave them
    seed_customer(app, 11, name="回归甲", phone="13700000011", now=inactive, last_order=inactive, consents=both)
    seed_customer(app, 12, name="回归乙", phone="13700000012", now=inactive, last_order=inactive, consents=both)
    start = NOW - timedelta(hours=1)  # 09:00 in Shanghai
    run_days(app, start, 1)
    assert _sent(app)[11] == ["winback_sms"] and _sent(app)[12] == ["winback_sms"]
    (code,) = codes(app, 11, "winback20")
    accounts = app.extensions["promoflow"].accounts
    accounts.add_user("pos", roles=["integration"], password=PASSWORD, now=NOW)
    clock.now = NOW + timedelta(days=2, hours=4)  # 14:00 two days later, at the store
    redeemed = app.test_client().post("/api/v1/coupons/redeem", headers=bearer(accounts.create_token("pos", now=NOW)),
                                      json={"code": code, "phone": "13700000011", "order_id": "SH-0001",
                                            "order_amount": "128.00", "store": "sh_xujiahui"})
    assert redeemed.status_code == 200, redeemed.get_json()
    run_days(app, start + timedelta(days=1), 9)
    sent = _sent(app)
    assert sent[12] == ["winback_sms", "winback_reminder"]  # not redeemed: the reminder
    assert sent[11] == ["winback_sms"]  # redeemed at the till: no reminder


def test_exit_when_coupon_redeemed_ends_the_journey(app: Flask, clock, tmp_path) -> None:
    from coupon_support import publish_guarded

    from engine.storage.models import CustomerTag

    publish_guarded(app, tmp_path, NOW)
    for cid in (21, 22):  # history
        seed_customer(app, cid, name=f"顾客{cid}", phone=f"137000000{cid}", now=NOW - timedelta(days=5),
                      tags=("till_exit_test",))
    start = NOW - timedelta(hours=1)
    run_days(app, start, 1)
    (code,) = codes(app, 21, "till_plain")
    accounts = app.extensions["promoflow"].accounts
    accounts.add_user("pos", roles=["integration"], password=PASSWORD, now=NOW)
    clock.now = NOW + timedelta(days=1)
    assert app.test_client().post("/api/v1/coupons/redeem", headers=bearer(accounts.create_token("pos", now=NOW)),
                                  json={"code": code, "customer_id": 21, "order_id": "X-21",
                                        "order_amount": "30"}).status_code == 200
    run_days(app, start + timedelta(days=1), 5)
    with app.extensions["promoflow"].session_factory() as s:
        tagged = set(s.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag == "till_not_redeemed")))
    assert tagged == {22}
