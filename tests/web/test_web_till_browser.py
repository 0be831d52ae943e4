"""Browser test of the till (门店核销) at phone width (390×844, Debian's
Chromium): a store clerk finds a lapsed customer by the last four digits of
the phone and the name, sees the win-back coupon the shipped rule issued,
redeems it with the order amount, and is told why a second attempt is refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from coupon_support import codes, coupon_state, run_rules, seed_customer
from flask import Flask
from web_support import BROWSER_MARKS, CHROMIUM, NOW, PASSWORD

pytestmark = BROWSER_MARKS


def test_clerk_redeems_at_the_till_on_a_phone(app: Flask, live_url: str, clock) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    inactive = NOW - timedelta(days=100)
    seed_customer(app, 31, name="林小姐", phone="13912345678", now=inactive, last_order=inactive,  # history
                  consents={"sms": True})
    run_rules(app, NOW + timedelta(minutes=1))  # 10:01: the win-back rule issues its coupon
    (code,) = codes(app, 31, "winback20")
    clock.now = NOW + timedelta(hours=4)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page.goto(f"{live_url}/till")
            page.fill("#username", "staff")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/till")
            page.fill('form.till-find [name="phone"]', "5678")
            page.click("form.till-find button[type=submit]")
            assert "后 4 位加姓名" in page.locator(".till-find .flash.error").inner_text()  # the name is needed too
            page.fill('form.till-find [name="name"]', "林")
            page.click("form.till-find button[type=submit]")
            coupon = page.locator(f'.till-wallet li[data-code="{code}"]')
            assert coupon.get_attribute("data-usable") == "yes" and "20.00" in coupon.inner_text()
            assert page.input_value('form.till-redeem [name="code"]') == code  # the usable coupon, ready
            page.fill('form.till-redeem [name="amount"]', "128")
            page.click("form.till-redeem button[type=submit]")
            result = page.locator(".till-result")
            assert result.get_attribute("data-result") == "redeemed" and "核销成功" in result.inner_text()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
            assert page.locator(f'.till-wallet li[data-code="{code}"]').get_attribute("data-usable") == "no"
            page.fill('form.till-redeem [name="code"]', code.lower())  # typed again, as a clerk would
            page.fill('form.till-redeem [name="amount"]', "128")
            page.click("form.till-redeem button[type=submit]")
            refused = page.locator(".till-result")
            assert refused.get_attribute("data-reason") == "already_redeemed"
            assert "不能核销：该券已核销" in refused.inner_text()
            page.goto(f"{live_url}/till?customer=31&lang=en")
            page.fill('form.till-redeem [name="code"]', "WB20NOSUCHCODE")
            page.fill('form.till-redeem [name="amount"]', "128")
            page.click("form.till-redeem button[type=submit]")
            assert "No coupon has this code" in page.locator(".till-result").inner_text()
        finally:
            browser.close()
    assert coupon_state(app, code)[0] == "redeemed"
