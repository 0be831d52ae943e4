"""Browser test (Playwright driving Debian's Chromium, headless): staff signs in,
fills the activity request (a conditional field, a second sub-table row), sees
a validation error, fixes it, submits and finds the record in the list."""

from __future__ import annotations

import pytest
from flask import Flask
from web_support import BROWSER_MARKS, CHROMIUM, PASSWORD

pytestmark = BROWSER_MARKS


def test_staff_fills_the_activity_request_in_a_browser(app: Flask, live_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")  # a phone
            page.goto(f"{live_url}/forms/activity_request/new")
            page.fill("#username", "staff")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/forms/activity_request/new")
            coupon = page.locator('[data-key="coupon_value"]')
            percent = page.locator('[data-key="discount_percent"]')
            assert coupon.is_hidden() and percent.is_hidden()
            page.fill("#name", "春季新品试吃")
            page.select_option("#channel", "wecom")
            page.fill("#budget", "8000")
            page.fill("#start_date", "2025-03-10")
            page.fill("#end_date", "2025-03-05")  # before the start: an error
            page.select_option("#discount_type", "coupon")
            assert coupon.is_visible() and percent.is_hidden()
            page.fill("#coupon_value", "15")
            page.fill('[name="materials-0-item"]', "海报")
            page.fill('[name="materials-0-qty"]', "20")
            page.fill('[name="materials-0-unit_cost"]', "2.5")
            page.click("[data-add-row]")
            page.fill('[name="materials-1-item"]', "试吃杯")
            page.fill('[name="materials-1-qty"]', "500")
            page.fill('[name="materials-1-unit_cost"]', "0.3")
            page.select_option("#target_store", "sh_xujiahui")
            page.click("form.record-form button[type=submit]")
            error = page.locator('[data-key="end_date"] .error')
            assert error.inner_text() == "必须晚于「开始日期」"
            assert page.input_value('[name="materials-1-item"]') == "试吃杯"
            assert coupon.is_visible() and page.input_value("#coupon_value") == "15"
            page.fill("#end_date", "2025-03-20")
            page.click("form.record-form button[type=submit]")
            page.wait_for_url("**/records/*")
            assert "试吃杯" in page.content()
            page.goto(f"{live_url}/forms/activity_request/records")
            assert page.locator("table.list tbody tr").filter(has_text="春季新品试吃").count() == 1
        finally:
            browser.close()
    record = app.extensions["promoflow"].records.list("activity_request").items[0]
    assert record.data["materials"] == [{"item": "海报", "qty": 20, "unit_cost": "2.50"},
                                        {"item": "试吃杯", "qty": 500, "unit_cost": "0.30"}]
    assert record.data["coupon_value"] == "15.00" and record.created_by == "staff"
