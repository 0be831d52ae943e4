"""Browser check of the customer page's points section (Debian's Chromium, at
phone width): a marketing user sees the balance, the tier's title, the next
lapse and the ledger in Chinese, then in English, and nothing is wider than
the phone."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from .conftest import PASSWORD
from .support import bearer, customer, order, tick

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true", reason="Chromium is not installed"),
]


@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The app under a real WSGI server (waitress) on a free loopback port."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)


def test_points_on_the_customer_page(app: Flask, tokens, services, live_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    client, auth = app.test_client(), bearer(tokens["till"])
    for i, amount in enumerate(("4000.00", "1200.00")):
        assert client.post("/api/v1/orders", json=order(f"L{i}", amount, member="M002", placed_at="2025-02-20 12:00"),
                           headers=auth).status_code == 201
    li = customer(services.session_factory, "M002").id
    assert client.post("/api/v1/points/redeem", json={"customer_id": li, "points": 300, "idempotency_key": "B1",
                                                      "reason": "兑换保温杯"}, headers=auth).status_code == 201
    tick(app)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page.goto(f"{live_url}/login")
            page.fill("#username", "mkt")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()
            page.goto(f"{live_url}/customers/{li}#points")
            assert page.locator(".points-balance .n").get_attribute("data-points") == "4900"
            assert page.locator(".points-tier .n").inner_text() == "金卡会员"
            assert "4900 分将于 2026-02-20 到期" in page.locator(".points-expiry").inner_text()
            rows = page.locator("table.points-ledger tr.points-entry")
            assert rows.count() == 3
            assert "使用" in rows.nth(0).inner_text() and "兑换保温杯" in rows.nth(0).inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.goto(f"{live_url}/customers/{li}?lang=en")
            assert page.locator(".points-tier .n").inner_text() == "Gold member"
            assert "Spent" in rows.nth(0).inner_text() and "Earned" in rows.nth(2).inner_text()
        finally:
            browser.close()
