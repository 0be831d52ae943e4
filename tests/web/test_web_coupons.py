"""Coupon redemption (核销) through ``/api/v1/coupons`` on both databases:
coupons issued by the product's rules on a fake clock, redeemed, refused with
each reason, checked, voided; every answer checked against the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

import pytest
from coupon_support import OpenApi, codes, coupon_state, publish_guarded, run_rules, seed_customer
from flask import Flask
from sqlalchemy import select
from web_support import NOW, PASSWORD, bearer

from engine.storage.models import Event, RedemptionAttempt

TEN = NOW + timedelta(minutes=1)  # 10:01 in Shanghai: the daily rules have run


@pytest.fixture
def till(app: Flask, tmp_path, clock) -> dict:
    """Customers (history) tagged for the guarded pool, its coupons issued by the rule, and a till's token."""
    publish_guarded(app, tmp_path, NOW)
    before = NOW - timedelta(days=30)
    seed_customer(app, 1, name="张三", phone="13800000001", now=before, tags=("till_test",))
    seed_customer(app, 2, name="李四", phone="13800000002", now=before, tags=("till_test",),
                  last_order=NOW - timedelta(days=20))  # an earlier order: not a new customer
    seed_customer(app, 3, name="王五", phone="13900009999", now=before, tags=("till_test",))  # blacklisted phone
    seed_customer(app, 4, name="张三", phone="+86 138-0000-0001", now=before, tags=("till_test",))  # same phone as 1
    seed_customer(app, 5, name="钱七", phone="13800000005", now=before, tags=("till_test",))
    run_rules(app, TEN)
    clock.now = TEN + timedelta(minutes=5)
    accounts = app.extensions["promoflow"].accounts
    accounts.add_user("pos", roles=["integration"], password=PASSWORD, now=NOW)
    token = accounts.create_token("pos", now=NOW)
    issued = {cid: codes(app, cid, "till_guarded") for cid in (1, 2, 3, 4, 5)}
    assert all(len(v) == 2 for v in issued.values()), issued
    return {"auth": bearer(token), "codes": issued, "plain": {cid: codes(app, cid, "till_plain") for cid in (1, 5)}}


def _redeem(app: Flask, auth: dict, **body) -> object:
    return app.test_client().post("/api/v1/coupons/redeem", json=body, headers=auth)


def test_redeem_then_repeat_then_other_order(app: Flask, till: dict) -> None:
    api, auth = OpenApi(app), till["auth"]
    code = till["codes"][1][0]
    first = _redeem(app, auth, code=code, customer_id=1, order_id="POS-1", order_amount="88.00", store="sh_xujiahui",
                    device="till-01")
    body = api.check("/coupons/redeem", "post", first)
    assert first.status_code == 200 and body["status"] == "redeemed" and not body["replayed"]
    assert body["value"] == "10.00" and body["pool"] == "till_guarded" and body["customer_id"] == 1
    assert coupon_state(app, code)[0] == "redeemed"
    again = _redeem(app, auth, code=code.lower(), customer_id=1, order_id="POS-1", order_amount="88.00")
    assert again.status_code == 200 and api.check("/coupons/redeem", "post", again)["replayed"] is True
    assert again.get_json()["redeemed_at"] == body["redeemed_at"]
    other = _redeem(app, auth, code=code, customer_id=1, order_id="POS-2", order_amount="88.00")
    refused = api.check("/coupons/redeem", "post", other)
    assert other.status_code == 422 and refused["reason"] == "already_redeemed"
    assert refused["message"]["zh"] and refused["message"]["en"] and refused["errors"][0]["field"] == "code"
    with app.extensions["promoflow"].session_factory() as s:
        events = s.execute(select(Event.name, Event.subject_id, Event.payload).where(Event.name == "coupon.redeemed"))
        events = list(events)
        attempts = list(s.scalars(select(RedemptionAttempt.result).where(RedemptionAttempt.code == code)
                                  .order_by(RedemptionAttempt.id)))
    assert [(n, sid, p["order_id"]) for n, sid, p in events] == [("coupon.redeemed", "1", "POS-1")]
    assert attempts == ["redeemed", "replayed", "refused"]
    check = app.test_client().get(f"/api/v1/coupons/{code}", headers=auth)
    checked = api.check("/coupons/{code}", "get", check)
    assert checked["valid"] is False and checked["reason"] == "already_redeemed"
    assert checked["coupon"]["redeemed_order"] == "POS-1" and checked["coupon"]["redeemed_store"] == "sh_xujiahui"


@pytest.mark.parametrize("case, body, reason, field", [
    ("unknown", {"code": "WB20NOSUCHCODE", "customer_id": 1}, "unknown", "code"),
    ("not_yours", {"code": "@2", "customer_id": 1}, "not_yours", "customer_id"),
    ("not_yours_phone", {"code": "@1", "phone": "13800000002"}, "not_yours", "customer_id"),
    ("below_min", {"code": "@1", "customer_id": 1, "order_amount": "49.99"}, "below_min_order", "order_amount"),
    ("not_new", {"code": "@2", "customer_id": 2}, "not_new_customer", "customer_id"),
    ("blacklisted_phone", {"code": "@3", "customer_id": 3}, "blacklisted", "phone"),
    ("blacklisted_device", {"code": "@1", "customer_id": 1, "device": "till-banned"}, "blacklisted", "phone"),
])
def test_refusals(app: Flask, till: dict, case: str, body: dict, reason: str, field: str) -> None:
    api = OpenApi(app)
    if body["code"].startswith("@"):
        body = {**body, "code": till["codes"][int(body["code"][1:])][0]}
    body = {"order_id": f"POS-{case}", "order_amount": "100", **body}
    response = _redeem(app, till["auth"], **body)
    out = api.check("/coupons/redeem", "post", response)
    assert response.status_code == 422 and out["status"] == "refused" and out["reason"] == reason
    assert out["errors"][0]["field"] == field and out["errors"][0]["code"] == reason
    if reason == "below_min_order":
        assert "50.00" in out["message"]["zh"] and "50.00" in out["message"]["en"]
    if reason != "unknown":
        assert coupon_state(app, body["code"])[0] == "issued"


def test_limits_per_customer_phone_and_stacking(app: Flask, till: dict) -> None:
    auth = till["auth"]
    one, two = till["codes"][1]
    assert _redeem(app, auth, code=one, customer_id=1, order_id="A", order_amount="60").status_code == 200
    second = _redeem(app, auth, code=two, customer_id=1, order_id="B", order_amount="60").get_json()
    assert second["reason"] == "limit_per_customer"
    # customer 4 has the same phone (written differently): the per-phone limit counts it once
    same_phone = _redeem(app, auth, code=till["codes"][4][0], customer_id=4, order_id="C", order_amount="60")
    assert same_phone.get_json()["reason"] == "limit_per_phone"
    # stacking: a plain coupon first, then the guarded one (not stackable) on the same order
    assert _redeem(app, auth, code=till["plain"][5][0], customer_id=5, order_id="D",
                   order_amount="60").status_code == 200
    stacked = _redeem(app, auth, code=till["codes"][5][0], customer_id=5, order_id="D", order_amount="60")
    assert stacked.get_json()["reason"] == "not_stackable"


def test_velocity_per_device_per_hour(app: Flask, till: dict, clock) -> None:
    auth = till["auth"]
    for cid in (6, 7, 8):  # more new customers with their own phones (history), issued the next morning
        seed_customer(app, cid, name=f"顾客{cid}", phone=f"1380000000{cid}", now=NOW, tags=("till_test",))
    run_rules(app, TEN + timedelta(days=1))
    clock.now = TEN + timedelta(days=1, minutes=5)
    first = {cid: till["codes"].get(cid, codes(app, cid, "till_guarded"))[0] for cid in (1, 5, 6, 7, 8)}

    def go(cid: int, device: str) -> dict:
        clock.now += timedelta(minutes=1)
        return _redeem(app, auth, code=first[cid], customer_id=cid, order_id=f"V{cid}-{device}",
                       order_amount="60", store="bj_sanlitun", device=device).get_json()

    assert [go(cid, "till-07")["status"] for cid in (1, 5, 6)] == ["redeemed"] * 3
    refused = go(7, "till-07")
    assert refused["reason"] == "velocity" and refused["errors"][0]["field"] == "store"
    assert go(7, "till-08")["status"] == "redeemed"  # another device of the same store: its own count
    clock.now += timedelta(minutes=60)  # the first of the three is now more than an hour old
    assert go(8, "till-07")["status"] == "redeemed"


def test_validity_window(app: Flask, till: dict, clock) -> None:
    code = till["codes"][1][0]
    clock.now = NOW - timedelta(hours=3)  # 07:00 on 2025-03-01 local: valid_from is that day's midnight
    early = app.test_client().get(f"/api/v1/coupons/{code}", headers=till["auth"]).get_json()
    assert early["valid"] is True
    clock.now = NOW + timedelta(days=9, hours=14)  # 2025-03-11 00:00 local: past valid_until 2025-03-10
    late = _redeem(app, till["auth"], code=code, customer_id=1, order_id="L", order_amount="60")
    assert late.status_code == 422 and late.get_json()["reason"] == "expired"


def test_void_restores_then_redeems_again(app: Flask, till: dict) -> None:
    api, auth, client = OpenApi(app), till["auth"], app.test_client()
    code = till["codes"][1][0]
    assert _redeem(app, auth, code=code, customer_id=1, order_id="R1", order_amount="60").status_code == 200
    wrong = client.post(f"/api/v1/coupons/{code}/void", json={"order_id": "R9"}, headers=auth)
    assert wrong.status_code == 409 and api.check("/coupons/{code}/void", "post", wrong)["error"]["code"] == "other_order"
    done = client.post(f"/api/v1/coupons/{code}/void", json={"order_id": "R1"}, headers=auth)
    assert api.check("/coupons/{code}/void", "post", done) == {"status": "restored", "code": code,
                                                               "coupon_status": "issued"}
    repeat = client.post(f"/api/v1/coupons/{code}/void", json={"order_id": "R1"}, headers=auth)
    assert repeat.status_code == 200 and repeat.get_json()["status"] == "repeated"
    assert coupon_state(app, code) == ("issued", None)
    assert _redeem(app, auth, code=code, customer_id=1, order_id="R2", order_amount="60").status_code == 200
    cancel = client.post(f"/api/v1/coupons/{code}/void", json={"order_id": "R2", "cancel": True}, headers=auth)
    assert cancel.get_json() == {"status": "cancelled", "code": code, "coupon_status": "void"}
    assert _redeem(app, auth, code=code, customer_id=1, order_id="R3", order_amount="60").get_json()["reason"] == "voided"
    unknown = client.post("/api/v1/coupons/NOPE/void", json={"order_id": "R1"}, headers=auth)
    assert unknown.status_code == 404
    api.check("/coupons/{code}/void", "post", unknown)


def test_bad_input_and_access(app: Flask, till: dict, tokens: dict) -> None:
    api, client = OpenApi(app), app.test_client()
    bad = client.post("/api/v1/coupons/redeem", json={"code": 5, "order_amount": "abc", "extra": 1},
                      headers=till["auth"])
    fields = {e["field"]: e["code"] for e in api.check("/coupons/redeem", "post", bad)["errors"]}
    assert bad.status_code == 422
    assert fields == {"code": "type", "order_amount": "type", "order_id": "required", "extra": "unknown",
                      "customer_id": "required"}
    neg = client.post("/api/v1/coupons/redeem", json={"code": "X", "phone": "1", "order_id": "1",
                                                      "order_amount": -1}, headers=till["auth"])
    assert neg.status_code == 422 and neg.get_json()["errors"][0]["field"] == "order_amount"
    assert client.post("/api/v1/coupons/redeem", data="[", headers=till["auth"]).status_code == 400
    assert client.post("/api/v1/coupons/redeem", json={}).status_code == 401
    outsider = client.post("/api/v1/coupons/redeem", json={}, headers=bearer(tokens["outsider"]))
    assert outsider.status_code == 403
    api.check("/coupons/redeem", "post", outsider)
    staff = client.get(f"/api/v1/coupons/{till['codes'][1][0]}", headers=bearer(tokens["staff"]))
    assert staff.status_code == 200 and api.check("/coupons/{code}", "get", staff)["valid"] is True
    missing = client.get("/api/v1/coupons/NOSUCH", headers=bearer(tokens["staff"]))
    assert missing.status_code == 404 and api.check("/coupons/{code}", "get", missing)["reason"] == "unknown"
    below = client.get(f"/api/v1/coupons/{till['codes'][1][0]}?order_amount=10", headers=bearer(tokens["clerk"]))
    assert below.get_json()["reason"] == "below_min_order"
