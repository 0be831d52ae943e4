"""The activity approval end to end in a browser (Playwright driving Debian's
Chromium, headless): staff submits a 60,000-yuan request, the marketing
manager approves it from the inbox, finance (the one finance user, so the
`all` co-sign is complete) sees it and approves, and the submitter sees
"已批准" and the timeline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from web_support import BROWSER_MARKS, CHROMIUM, NOW, PASSWORD
from web_support import sign_in_browser as _sign_in

pytestmark = BROWSER_MARKS


@pytest.fixture
def finance_user(app: Flask) -> str:
    """The one finance user, so the `all` co-sign is complete with one approval."""
    app.extensions["promoflow"].accounts.add_user("finance", roles=["finance"], password=PASSWORD, now=NOW)
    return "finance"


def _approve_from_inbox(page: Any, comment: str) -> None:
    row = page.locator("table.tasks tbody tr.task-row").filter(has_text="六万元新品推广")
    assert row.count() == 1
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r".*/tasks/\d+$"))
    page.fill("#comment", comment)
    page.click('button[data-action="approve"]')
    page.wait_for_url("**/inbox")
    assert "已同意" in page.locator(".flash").first.inner_text()
    assert page.locator("table.tasks tbody tr.task-row").filter(has_text="六万元新品推广").count() == 0


def test_activity_approval_walk_in_a_browser(app: Flask, finance_user: str, live_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            # 1. staff submits a 60,000-yuan request
            staff = _sign_in(browser, live_url, "staff", "/forms/activity_request/new")
            staff.fill("#name", "六万元新品推广")
            staff.select_option("#channel", "wecom")
            staff.fill("#budget", "60000")
            staff.fill("#start_date", "2025-03-10")
            staff.fill("#end_date", "2025-03-31")
            staff.select_option("#discount_type", "coupon")
            staff.fill("#coupon_value", "30")
            staff.fill('[name="materials-0-item"]', "海报")
            staff.fill('[name="materials-0-qty"]', "100")
            staff.fill('[name="materials-0-unit_cost"]', "5")
            staff.select_option("#target_store", "all")
            staff.click("form.record-form button[type=submit]")
            staff.wait_for_url(re.compile(r".*/records/\d+$"))
            record_url = staff.url
            panel = staff.locator("section.workflow")
            assert panel.get_attribute("data-workflow-status") == "running"
            assert "审批中" in panel.inner_text() and "市场经理审批" in panel.inner_text()

            # 2. the marketing manager approves in the inbox
            manager = _sign_in(browser, live_url, "manager", "/inbox")
            assert manager.locator("[data-inbox-count]").inner_text() == "1"
            _approve_from_inbox(manager, "同意，注意控制物料成本")

            # 3. finance sees it (with the manager's comment) and approves
            finance = _sign_in(browser, live_url, "finance", "/inbox")
            row = finance.locator("table.tasks tbody tr.task-row").filter(has_text="六万元新品推广")
            assert row.count() == 1 and "财务会签" in row.inner_text()
            row.locator("a").first.click()
            finance.wait_for_url(re.compile(r".*/tasks/\d+$"))
            assert "同意，注意控制物料成本" in finance.locator("ol.timeline").inner_text()
            assert finance.locator("figure.diagram svg").count() == 1
            finance.fill("#comment", "预算合理")
            finance.click('button[data-action="approve"]')
            finance.wait_for_url("**/inbox")

            # 4. the submitter sees "approved" and the timeline
            staff.goto(record_url)
            panel = staff.locator("section.workflow")
            assert panel.get_attribute("data-workflow-status") == "approved"
            assert "已批准" in panel.locator(".wf-status").inner_text()
            timeline = staff.locator("ol.timeline").inner_text()
            assert "同意，注意控制物料成本" in timeline and "预算合理" in timeline
            assert timeline.index("同意，注意控制物料成本") < timeline.index("预算合理")
            assert "已批准" in staff.locator("dl.record").inner_text()  # the status field set by the flow
            assert staff.locator("figure.diagram svg").count() == 1
        finally:
            browser.close()
    record = app.extensions["promoflow"].records.list("activity_request").items[0]
    assert record.data["status"] == "approved" and record.data["budget"] == "60000.00"
    state = app.extensions["promoflow"].workflows.instance_for_record(record.id)
    assert state.status == "approved"
