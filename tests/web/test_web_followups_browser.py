"""Browser check (Playwright, Debian's Chromium, phone width): a store manager
opens the inbox, finds the detractor follow-up task a rule created, and marks
it done with an outcome."""

from __future__ import annotations

import pytest
from flask import Flask
from test_web_followups import _answer_survey, _followups, _tick, world  # noqa: F401 - the fixture
from web_support import BROWSER_MARKS, CHROMIUM, PASSWORD

pytestmark = BROWSER_MARKS


def test_store_manager_does_the_followup_on_a_phone(world: Flask, live_url: str) -> None:  # noqa: F811
    _answer_survey(world, 2)
    _tick(world)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page.goto(f"{live_url}/inbox")
            page.fill("#username", "mgr_sh")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url("**/inbox")
            row = page.locator("table.followups tr.followup-row")
            assert row.count() == 1 and "王芳" in row.inner_text()
            row.locator("a").click()
            page.wait_for_url("**/tasks/*")
            page.select_option("#outcome", "contacted")
            page.fill("#comment", "已电话回访")
            page.click("form.followup-form button[type=submit]")
            page.wait_for_url("**/inbox")
            assert "任务已完成：已联系" in page.content()
            assert page.locator("table.followups tr.followup-row").count() == 0
        finally:
            browser.close()
    done = _followups(world, "mgr_sh", "done")
    assert [(t["outcome"], t["comment"]) for t in done] == [("contacted", "已电话回访")]
