"""The shipped store redemption form redeems through the coupon service: a
code the engine issued (no dash: ``WB20KBEV2MSTRH``) is accepted and marked
redeemed; a code never issued, or one already redeemed, is a 422 field error
on ``coupon_code`` and no record is stored."""

from __future__ import annotations

from datetime import timedelta

from coupon_support import codes, coupon_state, run_rules, seed_customer
from flask import Flask
from sqlalchemy import select
from web_support import NOW, bearer, csrf_from

from engine.storage.models import RedemptionAttempt


def _body(code: str, amount: int = 128, customer: int = 51) -> dict:
    return {"customer": customer, "coupon_code": code, "order_amount": amount, "store": "sh_xujiahui"}


def test_the_form_redeems_or_refuses_on_the_code_field(app: Flask, tokens: dict, clock, login) -> None:
    inactive = NOW - timedelta(days=100)
    for cid in (51, 52):  # history
        seed_customer(app, cid, name=f"顾客{cid}", phone=f"1350000005{cid % 10}", now=inactive, last_order=inactive,
                      consents={"sms": True})
    run_rules(app, NOW + timedelta(minutes=1))
    clock.now = NOW + timedelta(hours=3)
    (code,) = codes(app, 51, "winback20")
    (other,) = codes(app, 52, "winback20")
    assert "-" not in code
    client, auth = app.test_client(), bearer(tokens["staff"])
    url = "/api/v1/forms/store_redemption/records"
    never = client.post(url, json=_body("WB20-8F3K2Q9A"), headers=auth)
    assert never.status_code == 422
    assert never.get_json()["errors"] == [{"field": "coupon_code", "code": "coupon_unknown",
                                           "message": "券码不存在，请核对后重试"}]
    low = client.post(url, json=_body(code, amount=50), headers=auth)
    assert low.status_code == 422 and low.get_json()["errors"][0]["message"] == "订单金额未达到最低消费 99.00 元"
    mine = client.post(url, json=_body(other), headers=auth)  # 52's coupon presented for 51
    assert mine.get_json()["errors"][0]["code"] == "coupon_not_yours"
    assert client.get(url, headers=bearer(tokens["clerk"])).get_json()["total"] == 0  # nothing stored
    assert coupon_state(app, code)[0] == "issued"
    created = client.post(url, json=_body(code.lower()), headers=auth)
    assert created.status_code == 201, created.get_json()
    assert coupon_state(app, code)[0] == "redeemed"
    # the HTML form: the same service, the error beside the field
    staff = login("staff")
    page = staff.get("/forms/store_redemption/new")
    again = staff.post("/forms/store_redemption/new", data={
        "customer": "52", "coupon_code": "WB20NEVERISSUED", "order_amount": "128", "store": "sh_xujiahui",
        "redeemed_at": "2025-03-01T13:00", "csrf_token": csrf_from(page.text)})
    assert again.status_code == 422 and "券码不存在" in again.text
    ok = staff.post("/forms/store_redemption/new", data={
        "customer": "52", "coupon_code": other, "order_amount": "128", "store": "sh_xujiahui",
        "redeemed_at": "2025-03-01T13:00", "csrf_token": csrf_from(page.text)})
    assert ok.status_code == 302 and coupon_state(app, other)[0] == "redeemed"
    with app.extensions["promoflow"].session_factory() as s:  # every attempt is in the log, refused ones too
        log = [(a.result, a.reason) for a in s.scalars(select(RedemptionAttempt).order_by(RedemptionAttempt.id))]
    assert log == [("refused", "unknown"), ("refused", "below_min_order"), ("refused", "not_yours"),
                   ("redeemed", None), ("refused", "unknown"), ("redeemed", None)]
