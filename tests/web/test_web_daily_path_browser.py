"""The daily path without dead ends, in a browser (Playwright driving Debian's
Chromium, headless, zh-CN, a 390×844 phone): what staff and approvers do
every day must always leave them a way forward (issue 15, "the daily path")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from test_web_customers import people  # noqa: F401 (a fixture)
from web_support import BROWSER_MARKS, CHROMIUM, NOW, bearer, sign_in_browser, valid_activity

pytestmark = BROWSER_MARKS


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _submit(app: Flask, tokens: dict[str, str], user: str = "staff", **overrides: Any) -> int:
    """A request submitted through the API (the page itself is walked in test_web_browser.py)."""
    response = app.test_client().post("/api/v1/forms/activity_request/records",
                                      json=valid_activity(**overrides), headers=bearer(tokens[user]))
    assert response.status_code == 201, response.text
    return int(response.json["id"])


def test_a_withdrawn_request_is_edited_and_resubmitted(app: Flask, tokens: dict[str, str], live_url: str,
                                                       browser: Any) -> None:
    record_id = _submit(app, tokens, name="撤回再提交")
    staff = sign_in_browser(browser, live_url, "staff", f"/records/{record_id}")
    staff.click("button[name=withdraw]")
    staff.wait_for_url(f"**/records/{record_id}")
    assert staff.locator("section.workflow").get_attribute("data-workflow-status") == "withdrawn"
    # the way forward: 修改并重新提交 (not a plain 编辑 that leaves it withdrawn)
    staff.click("text=修改并重新提交")
    staff.wait_for_url(f"**/records/{record_id}/resubmit")
    staff.fill("#budget", "9000")
    staff.click("form.record-form button[type=submit]")
    staff.wait_for_url(f"**/records/{record_id}")
    assert "已重新提交" in staff.locator(".flash").first.inner_text()
    panel = staff.locator("section.workflow")
    assert panel.get_attribute("data-workflow-status") == "running"
    assert "市场经理审批" in panel.inner_text()
    # a new round through the approval engine: the manager has the task again
    view = app.extensions["promoflow"].workflows.instance_for_record(record_id)
    actions = [h["action"] for h in view.history]
    assert actions[:3] == ["submit", "withdraw", "resubmit"]
    assert [t.assignee for t in view.tasks if t.status == "open"] == ["manager"]
    assert app.extensions["promoflow"].records.get(record_id).data["budget"] == "9000.00"


def _fill_activity(page: Any, name: str, budget: str = "8000") -> None:
    page.fill("#name", name)
    page.select_option("#channel", "wecom")
    page.fill("#budget", budget)
    page.fill("#start_date", "2025-03-10")
    page.fill("#end_date", "2025-03-31")
    page.select_option("#discount_type", "coupon")
    page.fill("#coupon_value", "30")
    page.fill('[name="materials-0-item"]', "海报")
    page.fill('[name="materials-0-qty"]', "100")
    page.fill('[name="materials-0-unit_cost"]', "5")
    page.select_option("#target_store", "all")


def test_a_rejected_attachment_does_not_stick(app: Flask, live_url: str, browser: Any) -> None:
    staff = sign_in_browser(browser, live_url, "staff", "/forms/activity_request/new")
    _fill_activity(staff, "附件可移除")
    staff.set_input_files("#attachments", files=[{"name": "evil.exe", "mimeType": "application/octet-stream",
                                                  "buffer": b"MZ\x90\x00"}])
    staff.click("form.record-form button[type=submit]")
    field = staff.locator('[data-key="attachments"]')
    assert field.locator(".error").count() == 1
    assert "evil.exe" not in field.inner_text()  # refused, so not "已上传：evil.exe"
    assert staff.locator('input[type=hidden][name="attachments"]').count() == 0
    # A good file, but another field is wrong: a refused submission keeps nothing on disk (issue 16), so
    # the form does not show the file as uploaded; choosing it again with the field fixed saves both.
    staff.set_input_files("#attachments", files=[{"name": "plan.pdf", "mimeType": "application/pdf",
                                                  "buffer": b"%PDF-1.4 plan"}])
    staff.fill("#end_date", "2025-03-01")  # before the start
    staff.click("form.record-form button[type=submit]")
    assert "已上传：plan.pdf" not in field.inner_text()
    staff.set_input_files("#attachments", files=[{"name": "plan.pdf", "mimeType": "application/pdf",
                                                  "buffer": b"%PDF-1.4 plan"}])
    staff.fill("#end_date", "2025-03-31")
    staff.click("form.record-form button[type=submit]")
    staff.wait_for_url(re.compile(r".*/records/\d+$"))
    record_id = int(staff.url.rsplit("/", 1)[1])
    record = app.extensions["promoflow"].records.get(record_id)
    assert record.data["name"] == "附件可移除" and record.data["attachments"]["name"] == "plan.pdf"


def test_reject_asks_first_needs_a_reason_and_says_where_the_request_went(app: Flask, tokens: dict[str, str],
                                                                          live_url: str, browser: Any) -> None:
    from test_web_inbox import add_extra_users, task_of

    add_extra_users(app)
    record_id = _submit(app, tokens, name="财务驳回回经理", budget="60000.00")
    approved = app.test_client().post(f"/api/v1/tasks/{task_of(app, 'manager', record_id).id}/approve",
                                      json={"comment": "同意"}, headers=bearer(tokens["manager"]))
    assert approved.status_code == 200
    task_id = task_of(app, "finance", record_id).id
    finance = sign_in_browser(browser, live_url, "finance", f"/tasks/{task_id}")
    questions: list[str] = []
    answer = {"accept": False}

    def on_dialog(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept() if answer["accept"] else dialog.dismiss()

    finance.on("dialog", on_dialog)
    # no reason: the page refuses before asking (and the server would too)
    finance.click('button[data-action="reject"]')
    assert finance.url.endswith(f"/tasks/{task_id}") and questions == []
    assert "驳回时请填写审批意见" in finance.eval_on_selector("#comment", "el => el.validationMessage")
    # a reason, then "no" to the question: still nothing happened
    finance.fill("#comment", "预算再核")
    finance.click('button[data-action="reject"]')
    assert questions == ["确定驳回此申请？"] and finance.url.endswith(f"/tasks/{task_id}")
    assert task_of(app, "finance", record_id).status == "open"
    # "yes": rejected back to the manager, and the message says so
    answer["accept"] = True
    finance.click('button[data-action="reject"]')
    finance.wait_for_url("**/inbox")
    assert finance.locator(".flash").first.inner_text() == "已驳回，申请退回到「市场经理审批」重新审批"
    # 已处理: my decision and when (10:00 in Shanghai)
    finance.goto(f"{live_url}/inbox?status=done")
    row = finance.locator("table.tasks tbody tr.task-row").filter(has_text="财务驳回回经理")
    assert "我的处理：驳回 · 2025-03-01 10:00" in row.inner_text()


def _fits(page: Any, width: int = 390) -> None:
    """No horizontal scrolling of the page itself (a wide table scrolls inside its own box)."""
    assert page.evaluate("document.scrollingElement.scrollWidth") <= width, page.url


def test_at_phone_width_the_buttons_are_in_reach_and_pages_fit(app: Flask, tokens: dict[str, str], live_url: str,
                                                              browser: Any) -> None:
    from test_web_inbox import task_of

    for n in range(3):
        _submit(app, tokens, name=f"手机宽度检查{n}", description="很长的活动说明" * 40)
    record_id = _submit(app, tokens, name="手机上审批")
    task_id = task_of(app, "manager", record_id).id
    manager = sign_in_browser(browser, live_url, "manager", f"/tasks/{task_id}")
    _fits(manager)
    for action in ("approve", "reject", "return"):
        box = manager.locator(f'button[data-action="{action}"]').bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 844, (action, box)
        hit = manager.evaluate(f"""() => {{ const b = document.querySelector('button[data-action="{action}"]')
            .getBoundingClientRect(); const el = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
            return el && el.getAttribute('data-action'); }}""")
        assert hit == action  # nothing covers it
    assert manager.evaluate("window.scrollY") == 0  # reached without scrolling
    manager.fill("#comment", "手机上同意")
    manager.click('button[data-action="approve"]')
    manager.wait_for_url("**/inbox")
    _fits(manager)
    manager.goto(f"{live_url}/rules/winback_90d/preview")
    assert manager.locator("svg.forecast-chart").count() == 1
    _fits(manager)
    staff = sign_in_browser(browser, live_url, "staff", "/forms/activity_request/records")
    assert staff.locator("table.list tbody tr").count() == 4
    _fits(staff)


def test_keyword_search_and_a_phone_by_its_last_four_digits(app: Flask, tokens: dict[str, str], live_url: str,
                                                             browser: Any, people: dict[str, int]) -> None:
    _submit(app, tokens, name="春季新品试吃", description="徐家汇门店")
    _submit(app, tokens, name="秋季清仓")
    staff = sign_in_browser(browser, live_url, "staff", "/forms/activity_request/records")
    staff.fill('input[name="q"]', "徐家汇")
    staff.click("form.filters button[type=submit]")
    staff.wait_for_url("**q=*")
    rows = staff.locator("table.list tbody tr")
    assert rows.count() == 1 and "春季新品试吃" in rows.first.inner_text()
    _fits(staff)
    manager = sign_in_browser(browser, live_url, "manager", "/customers")
    manager.fill('input[name="q"]', "5678")
    manager.locator('input[name="q"]').press("Enter")
    manager.wait_for_url("**q=5678*")
    found = manager.locator(".customer")
    assert found.count() == 1 and "张三" in found.first.inner_text()


def test_the_survey_asks_nps_on_a_0_to_10_scale(app: Flask, tokens: dict[str, str], live_url: str,
                                                 browser: Any) -> None:
    from datetime import timedelta

    from engine.feedback.links import sign_survey

    created = app.test_client().post("/api/v1/customers", headers=bearer(tokens["admin"]),
                                     json={"external_id": "NPS-1", "name": "问卷客户", "phone": "13800000001"})
    assert created.status_code in (200, 201), created.text
    customer_id = int(created.get_json()["id"])
    token = sign_survey("test-secret", customer_id=customer_id, campaign="spring_sale",
                        expires=NOW + timedelta(days=7))
    page = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN").new_page()
    page.goto(f"{live_url}/survey/{token}")
    scale = page.locator('[data-key="score"] input[type=radio][name="score"]')
    assert scale.count() == 11
    assert [scale.nth(i).get_attribute("value") for i in range(11)] == [str(n) for n in range(11)]
    assert page.locator('[data-key="score"] input[type=number]').count() == 0
    _fits(page)
    reasons = page.locator('[data-key="reason"]')
    assert reasons.is_hidden()
    page.click('label[for="score-7"]')
    assert reasons.is_visible()  # 0–8: asks why
    page.click('label[for="score-10"]')
    assert reasons.is_hidden()
    page.click("form.survey-form button[type=submit]")
    assert "感谢" in page.content()
    from sqlalchemy import select

    from engine.storage.models import Feedback

    with app.extensions["promoflow"].session_factory() as session:  # reading what the page stored
        assert session.execute(select(Feedback.customer_id, Feedback.score)).all() == [(customer_id, 10)]


def test_the_csv_export_has_local_times_labels_and_a_line_per_item(app: Flask, tokens: dict[str, str],
                                                                   live_url: str, browser: Any) -> None:
    import csv
    import io

    _submit(app, tokens, name="两行物料", channel="wecom",
            materials=[{"item": "海报", "qty": 10, "unit_cost": "3.50"}, {"item": "试吃杯", "qty": 500,
                                                                           "unit_cost": "0.30"}])
    staff = sign_in_browser(browser, live_url, "staff", "/forms/activity_request/records")
    with staff.expect_download() as info:
        staff.click("text=导出 CSV")
    text = open(info.value.path(), encoding="utf-8").read().lstrip("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 2  # one line per line item, the record's own cells repeated
    assert [(r["物料清单 · 物料"], r["物料清单 · 数量"]) for r in rows] == [("海报", "10"), ("试吃杯", "500")]
    assert {r["活动名称"] for r in rows} == {"两行物料"} and {r["渠道"] for r in rows} == {"企业微信"}
    assert {r["提交时间"] for r in rows} == {"2025-03-01T10:00:00+08:00"}  # business time, with its offset


def test_the_submitter_reminds_an_overdue_approver_once_an_hour(app: Flask, tokens: dict[str, str], clock: Any,
                                                                 live_url: str, browser: Any) -> None:
    from datetime import timedelta

    record_id = _submit(app, tokens, name="催办一下")
    staff = sign_in_browser(browser, live_url, "staff", f"/records/{record_id}")
    assert staff.locator("button[data-remind]").count() == 0  # not overdue yet (due in 48h)
    clock.now = NOW + timedelta(hours=49)
    staff = sign_in_browser(browser, live_url, "staff", f"/records/{record_id}")  # a new day, a new sign-in
    button = staff.locator("button[data-remind]")
    assert button.count() == 1 and "催办" in button.inner_text() and "市场经理审批" in button.inner_text()
    button.click()
    staff.wait_for_url(f"**/records/{record_id}")
    assert staff.locator(".flash").first.inner_text() == "已催办，审批人会收到提醒"
    staff.locator("button[data-remind]").click()  # again within the hour: refused, nothing sent
    assert staff.locator(".flash").first.inner_text() == "刚催办过，请一小时后再试"
    clock.now = NOW + timedelta(hours=50, minutes=1)
    staff.goto(f"{live_url}/records/{record_id}")
    staff.locator("button[data-remind]").click()
    assert staff.locator(".flash").first.inner_text() == "已催办，审批人会收到提醒"
    view = app.extensions["promoflow"].workflows.instance_for_record(record_id)
    reminders = [h for h in view.history if h["action"] == "remind"]
    assert [(h["actor"], h["target"]) for h in reminders] == [("staff", "manager"), ("staff", "manager")]
