"""Points where people and rules see them: the customer page (balance, tier
title, next lapse, the ledger with zh/en words, paged), and ``points`` in
conditions, compiled to SQL (the segment filter of the customer list) and to
a Python predicate (an event rule's audience). SQLite and PostgreSQL."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.models import CustomerTag

from .conftest import PASSWORD
from .support import HERE, NOW, bearer, customer, order, tick

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _login(app: Flask, name: str, lang: str) -> FlaskClient:
    client = app.test_client()
    page = client.get(f"/login?lang={lang}")
    token = _CSRF.search(page.text)
    assert token, "no CSRF token on the login page"
    assert client.post("/login", data={"username": name, "password": PASSWORD,
                                       "csrf_token": token.group(1)}).status_code == 302
    return client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _gold_member(app: Flask, tokens, services) -> int:
    client, auth = app.test_client(), bearer(tokens["till"])
    for i, amount in enumerate(("3000.00", "2200.00")):
        assert client.post("/api/v1/orders", json=order(f"L{i}", amount, member="M002", placed_at="2025-02-20 12:00"),
                           headers=auth).status_code == 201
    assert client.post("/api/v1/points/redeem", json={"customer_id": customer(services.session_factory, "M002").id,
                                                      "points": 200, "idempotency_key": "P1", "reason": "兑换雨伞"},
                       headers=auth).status_code == 201
    tick(app)  # the day's tier evaluation: 5,200 yuan in 365 days is gold
    return customer(services.session_factory, "M002").id


def test_customer_page_shows_points_and_tier_in_both_languages(app: Flask, tokens, services) -> None:
    li = _gold_member(app, tokens, services)
    zh = _login(app, "mkt", "zh").get(f"/customers/{li}")
    assert zh.status_code == 200
    text = _text(zh.text)
    assert "可用积分 5000" in text and "会员等级 金卡会员" in text and "5000 分将于 2026-02-20 到期" in text
    assert "积分明细 (3)" in text
    rows = re.findall(r'<tr class="points-entry kind-(\w+)" data-kind="\w+" data-points="(-?\d+)">', zh.text)
    assert rows == [("spend", "-200"), ("earn", "2200"), ("earn", "3000")]
    assert "使用" in text and "获得" in text and "兑换雨伞" in text and "pos/L0" in text
    en = _text(_login(app, "mkt", "en").get(f"/customers/{li}").text)
    assert "Points available 5000" in en and "Membership tier Gold member" in en
    assert "5000 points lapse on 2026-02-20" in en and "Spent" in en and "Earned" in en
    # Someone without points or tier.
    wang = customer(services.session_factory, "M003").id
    none = _text(_login(app, "mkt", "en").get(f"/customers/{wang}").text)
    assert "Points available 0" in none and "No tier yet" in none
    # Pages of the ledger follow ?points_page= and stay within range.
    assert _login(app, "mkt", "zh").get(f"/customers/{li}?points_page=x").status_code == 200
    assert _login(app, "staff", "zh").get(f"/customers/{li}").status_code == 403


def test_points_in_conditions_sql_and_python(app: Flask, tokens, services, clock) -> None:
    publish_paths(services.session_factory, [*library_paths(), HERE / "rules.yaml"], now=NOW, by="test")
    li = _gold_member(app, tokens, services)
    zhang = customer(services.session_factory, "M001").id
    client, auth = app.test_client(), bearer(tokens["till"])
    assert client.post("/api/v1/orders", json=order("Z1", "99.99", placed_at="2025-02-21 12:00"),
                       headers=auth).status_code == 201  # 99 points: one short

    # SQL: the customer list filtered by the segment `points: {gte: 100}`.
    listed = _login(app, "mkt", "zh").get("/customers?segment=points_rich")
    assert listed.status_code == 200
    found = {int(x) for x in re.findall(r'href="/customers/(\d+)"', listed.text)}
    assert li in found and zhang not in found

    # Python: an event rule whose audience is `points: {gte: 100}`.
    for cid in (li, zhang):
        posted = client.post("/api/v1/events", json={"name": "custom.store_visit", "customer_id": cid,
                                                     "idempotency_key": f"visit-{cid}"}, headers=auth)
        assert posted.status_code == 201, posted.text
    tick(app)
    tick(app)
    with services.session_factory() as s:
        thanked = set(s.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag == "points_thanked")))
    assert thanked == {li}
