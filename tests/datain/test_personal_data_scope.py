"""Masking by role everywhere and scoped managers (issue 16, item 3): the
customer page, the message detail (page and API), the rule preview and the
records export mask phones and e-mails; unmasking is the
``unmask_personal_data`` permission and every unmasked view is audited; a
store manager opens only the store's customers, an account manager only the
accounts. Customers and orders come in through the API, the win-back SMS
from the scheduler's tick; both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select, update

from engine.storage.database import transaction
from engine.storage.models import Customer, OutboxMessage, User
from web.cli import main

from .conftest import NOW, PASSWORD

SHOP = {"name": "店内客户", "phone": "13911112222", "email": "shop.buyer@example.com", "attrs": {"store": "SH01"}}
OTHER = {"name": "别店客户", "phone": "13933334444", "email": "other.buyer@example.com", "attrs": {"store": "BJ02"}}
B2B = {"name": "大客户", "phone": "13955556666", "email": "b2b.owner@example.com"}
ROLES = {"clerk": ["store_manager"], "am": ["account_manager"], "mm": ["marketing_manager"]}


@pytest.fixture
def people(app: Flask, api, db_url: str) -> dict[str, Any]:
    """Three customers with a 120-day-old order each: one of store SH01 (the
    clerk's), one of BJ02 and one account of ``am``."""
    svc = app.extensions["promoflow"]
    for name, roles in ROLES.items():
        svc.accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW)
    assert CliRunner().invoke(main, ["--database-url", db_url, "users", "store", "clerk", "SH01"]).exit_code == 0
    ids = {}
    for key, who in (("shop", SHOP), ("other", OTHER), ("b2b", B2B)):
        created = api("POST", "/customers", json={**who, "consent": {"sms": True}})
        assert created.status_code == 201, created.text
        ids[key] = created.get_json()["id"]
        placed = (NOW - timedelta(days=120)).astimezone().strftime("%Y-%m-%d %H:%M")
        order = api("POST", "/orders", json={
            "source": "pos", "external_id": f"O-{key}", "customer": {"phone": who["phone"]},
            "lines": [{"sku": "SKU-1", "name": "咖啡豆", "quantity": 1, "unit_price": "88.00"}],
            "amount": "88.00", "store": "SH01", "channel": "store", "placed_at": placed})
        assert order.status_code == 201, order.text
    # bulk history fixture: no door sets a customer's account manager yet (noted in the report)
    with transaction(svc.session_factory) as s:
        am_id = s.scalar(select(User.id).where(User.username == "am"))
        s.execute(update(Customer).where(Customer.id == ids["b2b"]).values(account_manager_id=am_id))
    return ids


@pytest.fixture
def world(app: Flask, people, worker_tick) -> dict[str, Any]:
    svc = app.extensions["promoflow"]
    ids = dict(people)
    worker_tick(NOW + timedelta(minutes=1))  # the 10:00 win-back run sends each of them an SMS
    with svc.session_factory() as s:
        ids["message"] = s.scalar(select(OutboxMessage.id).where(OutboxMessage.customer_id == ids["shop"],
                                                                OutboxMessage.channel == "sms"))
    assert ids["message"] is not None
    return ids


def _login(app: Flask, name: str) -> Any:
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}).status_code == 302
    return client


def _unmasked_entries(api) -> list[dict[str, Any]]:
    found = api("GET", "/audit?action=personal_data.unmasked", as_="admin")
    assert found.status_code == 200, found.text
    return found.get_json()["items"]


def test_store_and_account_managers_see_only_their_customers(app: Flask, world) -> None:
    clerk, am, mm = _login(app, "clerk"), _login(app, "am"), _login(app, "mm")
    listing = clerk.get("/customers").text
    assert "店内客户" in listing and "别店客户" not in listing and "大客户" not in listing
    assert clerk.get(f"/customers/{world['shop']}").status_code == 200
    assert clerk.get(f"/customers/{world['other']}").status_code == 404
    assert clerk.get(f"/customers/{world['b2b']}").status_code == 404
    assert clerk.get("/customers?q=13933334444&exact=1").text.count('class="customer"') == 0  # search is scoped too
    listing = am.get("/customers").text
    assert "大客户" in listing and "店内客户" not in listing
    assert am.get(f"/customers/{world['b2b']}").status_code == 200
    assert am.get(f"/customers/{world['shop']}").status_code == 404
    listing = mm.get("/customers").text
    assert all(name in listing for name in ("店内客户", "别店客户", "大客户"))


def test_customer_page_masks_and_unmasking_is_a_permission_and_audited(app: Flask, world, api) -> None:
    mm, clerk = _login(app, "mm"), _login(app, "clerk")
    page = mm.get(f"/customers/{world['shop']}").text
    assert "139****2222" in page and "s***@example.com" in page
    assert "13911112222" not in page and "shop.buyer@example.com" not in page
    assert 'class="unmask"' not in page  # marketing managers do not hold the permission
    assert mm.get(f"/customers/{world['shop']}?unmask=1").status_code == 403
    assert _unmasked_entries(api) == []

    masked = clerk.get(f"/customers/{world['shop']}").text
    assert "13911112222" not in masked and 'class="unmask"' in masked
    full = clerk.get(f"/customers/{world['shop']}?unmask=1").text
    assert "13911112222" in full and "shop.buyer@example.com" in full
    entries = _unmasked_entries(api)
    assert len(entries) == 1
    assert entries[0]["actor"] == "clerk" and entries[0]["entity_type"] == "customer"
    assert str(entries[0]["entity_id"]) == str(world["shop"])
    assert clerk.get(f"/customers/{world['other']}?unmask=1").status_code == 404  # out of scope: nothing to unmask
    assert len(_unmasked_entries(api)) == 1
    english = clerk.get(f"/customers/{world['shop']}?lang=en").text
    assert "Show full phone and e-mail" in english


def test_message_detail_page_and_api_mask_the_recipient(app: Flask, world, api) -> None:
    message = world["message"]
    shown = api("GET", f"/messages/{message}", as_="mkt")
    assert shown.status_code == 200, shown.text
    body = shown.get_json()
    assert body["recipient"] == "139****2222"
    assert "13911112222" not in shown.text
    refused = api("GET", f"/messages/{message}?unmask=1", as_="mkt")
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    page = _login(app, "mm").get(f"/messages/{message}").text
    assert "139****2222" in page and "13911112222" not in page
    assert _unmasked_entries(api) == []

    full = api("GET", f"/messages/{message}?unmask=1", as_="admin")
    assert full.status_code == 200 and full.get_json()["recipient"] == "13911112222"
    entries = _unmasked_entries(api)
    assert [(e["actor"], e["entity_type"], str(e["entity_id"])) for e in entries] == [
        ("admin", "message", str(message))]


def test_rule_preview_masks_its_sample(app: Flask, people) -> None:
    page = _login(app, "mm").get("/rules/winback_90d/preview?days=3").text
    assert "当前受众 3 人" in page
    assert all(masked in page for masked in ("139****2222", "139****4444", "s***@example.com"))
    for who in (SHOP, OTHER, B2B):
        assert who["phone"] not in page and who["email"] not in page
    admin_page = _login(app, "admin").get("/rules/winback_90d/preview?days=3").text
    assert SHOP["phone"] not in admin_page
