"""The till page on both databases: who may use it, CSRF, finding customers,
field errors, and the same service as the API behind the button."""

from __future__ import annotations

from datetime import timedelta

from coupon_support import codes, coupon_state, run_rules, seed_customer
from flask import Flask
from web_support import NOW, csrf_from


def _issued(app: Flask, clock) -> str:
    inactive = NOW - timedelta(days=100)
    seed_customer(app, 41, name="陈先生", phone="13611112222", now=inactive, last_order=inactive,  # history
                  consents={"sms": True})
    seed_customer(app, 42, name="陈太太", phone="13633332222", now=inactive)  # same last 4 digits
    run_rules(app, NOW + timedelta(minutes=1))
    clock.now = NOW + timedelta(hours=2)
    return codes(app, 41, "winback20")[0]


def test_who_may_use_the_till(app: Flask, login) -> None:
    assert login("staff").get("/till").status_code == 200
    assert login("clerk").get("/till").status_code == 200  # store manager
    assert login("manager").get("/till").status_code == 403
    assert login("outsider").get("/till").status_code == 403
    assert app.test_client().get("/till").status_code == 302  # to the sign-in page
    assert 'class="nav-till"' in login("staff").get("/").text
    assert 'class="nav-till"' not in login("manager").get("/").text


def test_find_redeem_and_field_errors(app: Flask, login, clock) -> None:
    code = _issued(app, clock)
    staff = login("staff")
    page = staff.get("/till?phone=2222&name=陈").text
    assert 'href="/till?customer=41"' in page and 'href="/till?customer=42"' in page  # two matches: a list
    assert "陈先生" in staff.get("/till?phone=2222&name=先生").text and 'data-customer="41"' in \
        staff.get("/till?phone=2222&name=先生").text
    assert 'data-customer="41"' in staff.get("/till", query_string={"phone": "+86 136-1111-2222"}).text  # full phone, any spelling
    assert "没有找到顾客" in staff.get("/till?phone=13600000000").text
    assert "后 4 位加姓名" in staff.get("/till?phone=2222").text
    form = staff.get("/till?customer=41")
    assert f'data-code="{code}" data-usable="yes"' in form.text
    token = csrf_from(form.text)
    no_csrf = staff.post("/till/redeem", data={"customer": "41", "code": code, "amount": "120", "order_id": "T1"})
    assert no_csrf.status_code == 400 and coupon_state(app, code)[0] == "issued"
    bad = staff.post("/till/redeem", data={"customer": "41", "code": "", "amount": "abc", "csrf_token": token})
    assert bad.status_code == 422 and "请输入订单金额" in bad.text and "请输入券码" in bad.text
    low = staff.post("/till/redeem", data={"customer": "41", "code": code, "amount": "60", "order_id": "T1",
                                           "csrf_token": token})
    assert low.status_code == 422 and 'data-reason="below_min_order"' in low.text and "99.00" in low.text
    ok = staff.post("/till/redeem", data={"customer": "41", "code": code, "amount": "120", "order_id": "T1",
                                          "csrf_token": token, "store": "gz_tianhe"})
    assert ok.status_code == 200 and 'data-result="redeemed"' in ok.text
    again = staff.post("/till/redeem", data={"customer": "41", "code": code, "amount": "120", "order_id": "T1",
                                             "csrf_token": token})
    assert again.status_code == 200 and 'data-result="redeemed"' in again.text  # a reload: same order, same result
    other = staff.post("/till/redeem", data={"customer": "42", "code": code, "amount": "120", "order_id": "T2",
                                             "csrf_token": token})
    assert other.status_code == 422 and 'data-reason="not_yours"' in other.text and "不属于此顾客" in other.text
    second = staff.post("/till/redeem", data={"customer": "41", "code": code, "amount": "120", "order_id": "T3",
                                              "csrf_token": token})
    assert second.status_code == 422 and 'data-reason="already_redeemed"' in second.text
    assert coupon_state(app, code)[0] == "redeemed"
    assert staff.get("/till?customer=999").status_code == 404
