"""The approval pages on both databases: the inbox (tasks per user, counts,
filters, the header badge), the task page (record, buttons the step allows,
timeline, diagram), the actions as CSRF-protected POSTs with their 403/404/409
pages, and the submitter's view (status, timeline, withdraw, edit & resubmit).

The shipped ``activity_approval``: marketing managers (any one) → finance
(every one, only above 50,000) → status approved.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import NOW, PASSWORD, csrf_from, valid_activity, valid_activity_form

#: Users besides the conftest's: a second marketing manager, one finance
#: approver (finance is mode `all`), a director.
EXTRA_USERS = {"manager2": ["marketing_manager"], "finance": ["finance"], "director": ["marketing_director"]}


def add_extra_users(app: Flask) -> Flask:
    accounts = app.extensions["promoflow"].accounts
    for name, roles in EXTRA_USERS.items():
        accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW)
    return app


@pytest.fixture
def flow(app: Flask) -> Flask:
    """The app with EXTRA_USERS added."""
    return add_extra_users(app)


def submit(app: Flask, user: str = "staff", **overrides: Any) -> int:
    """Submit an activity request through the service (which starts the flow); its record id."""
    body = valid_activity(**{"budget": "60000.00", **overrides})
    services = app.extensions["promoflow"]
    return int(services.records.create("activity_request", body, actor=user, now=services.now()).id)


def tasks(app: Flask, user: str, status: str = "open") -> list[Any]:
    return list(app.extensions["promoflow"].workflows.tasks_for(user, status=status))


def task_of(app: Flask, user: str, record_id: int) -> Any:
    """The user's open task on the record."""
    found = [t for t in tasks(app, user) if t.record_id == record_id]
    assert len(found) == 1, (user, found)
    return found[0]


def instance(app: Flask, record_id: int) -> Any:
    return app.extensions["promoflow"].workflows.instance_for_record(record_id)


def post_action(client: FlaskClient, task_id: int, action: str, **data: str) -> Any:
    """POST an action from the task page's form (with its CSRF token)."""
    page = client.get(f"/tasks/{task_id}")
    token = csrf_from(page.text) if page.status_code == 200 else csrf_from(client.get("/inbox").text)
    return client.post(f"/tasks/{task_id}/{action}", data={"csrf_token": token, **data})


def _task_links(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/tasks/(\d+)"', html)]


# ------------------------------------------------------------------ inbox

def test_inbox_lists_each_users_open_tasks_with_counts_and_badge(flow: Flask, login) -> None:
    first, second = submit(flow), submit(flow, name="第二个活动")
    manager = login("manager")
    page = manager.get("/inbox")
    assert page.status_code == 200
    mine = {t.id for t in tasks(flow, "manager")}
    assert len(mine) == 2 and set(_task_links(page.text)) == mine
    assert "春季促销" in page.text and "第二个活动" in page.text and "市场经理审批" in page.text
    assert 'data-count="open">2<' in page.text and 'data-count="done">0<' in page.text
    assert re.search(r'class="badge" data-inbox-count>2<', page.text)  # the header badge
    # each marketing manager has their own task; staff, finance and outsiders have none yet
    assert len(set(_task_links(login("manager2").get("/inbox").text))) == 2
    for user in ("staff", "finance", "outsider"):
        html = login(user).get("/inbox").text
        assert _task_links(html) == [] and "暂无任务" in html and "data-inbox-count" not in html
    assert {t.record_id for t in tasks(flow, "manager")} == {first, second}


def test_inbox_filters_by_status_and_form_and_puts_overdue_first(flow: Flask, login, clock) -> None:
    from datetime import timedelta

    early = submit(flow, name="早的")
    clock.now = NOW + timedelta(hours=30)
    late = submit(flow, name="晚的")
    clock.now = NOW + timedelta(hours=50)  # the first task (due 48 h) is overdue, the second not
    manager = login("manager")  # after the jump: a sign-in lasts session_lifetime (12 h) on the app's clock
    listing = login("manager2").get("/inbox").text
    rows = re.findall(r'<tr class="task-row( overdue)?" data-task="(\d+)"', listing)
    assert [(flag, int(tid)) for flag, tid in rows] == [(" overdue", task_of(flow, "manager2", early).id),
                                                        ("", task_of(flow, "manager2", late).id)]
    assert 'data-count="overdue">1<' in listing
    assert post_action(manager, task_of(flow, "manager", late).id, "approve").status_code == 302
    assert [t.record_id for t in tasks(flow, "manager2")] == [early]
    page = login("manager2").get("/inbox")
    assert 'class="task-row overdue"' in page.text and "已超时" in page.text
    # done tasks: the approved one for manager, not the other
    done = manager.get("/inbox?status=done")
    assert done.status_code == 200 and "晚的" in done.text and "早的" not in done.text
    assert 'data-count="done">1<' in done.text and 'data-count="overdue">1<' in done.text
    everything = manager.get("/inbox?status=all")
    assert "晚的" in everything.text and "早的" in everything.text
    assert manager.get("/inbox?form=nps_survey").text.count('href="/tasks/') == 0
    assert "早的" in manager.get("/inbox?form=activity_request").text
    assert manager.get("/inbox?status=bogus").status_code == 200  # treated as open


def test_inbox_in_english(flow: Flask, login) -> None:
    submit(flow)
    page = login("manager").get("/inbox?lang=en")
    assert "Inbox" in page.text and "Marketing manager review" in page.text and ">open<" not in page.text
    assert "open" in page.text


# ------------------------------------------------------------------ task page

def test_task_page_shows_record_buttons_timeline_and_diagram(flow: Flask, login) -> None:
    record_id = submit(flow, name="<b>不是粗体</b>")
    task = task_of(flow, "manager", record_id)
    page = login("manager").get(f"/tasks/{task.id}")
    html = page.text
    assert page.status_code == 200
    assert "活动名称" in html and "&lt;b&gt;不是粗体&lt;/b&gt;" in html and "<b>不是粗体" not in html
    assert "60000" in html and "海报" in html
    assert 'name="comment"' in html and 'name="csrf_token"' in html
    # manager_review allows return and transfer, not add_approver
    buttons = re.findall(r'data-action="([a-z_]+)"', html)
    assert buttons == ["approve", "reject", "return", "transfer", "comment"]
    assert "同意" in html and "驳回" in html and "退回" in html and "转交" in html and "加签" not in html
    assert re.search(r'<option value="manager2">', html) and 'value="manager">' not in html
    assert "<svg" in html and "审批记录" in html and "提交申请" in html
    assert "staff" in html  # the submitter in the timeline
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_task_page_of_someone_else_is_403_and_unknown_is_404(flow: Flask, login) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    for user in ("staff", "finance", "manager2"):
        response = login(user).get(f"/tasks/{task.id}")
        assert response.status_code == 403 and "没有权限" in response.text
    finance = login("finance")
    assert post_action(finance, task.id, "approve").status_code == 403
    assert instance(flow, record_id).status == "running"
    assert finance.get("/tasks/999999").status_code == 404
    assert post_action(finance, 999999, "approve").status_code == 404
    assert post_action(login("manager"), task.id, "dance").status_code == 404


def test_task_posts_without_csrf_token_are_refused(flow: Flask, login) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    manager = login("manager")
    for action in ("approve", "reject", "return", "transfer", "comment"):
        response = manager.post(f"/tasks/{task.id}/{action}", data={"comment": "x", "target": "manager2"})
        assert response.status_code == 400 and "安全令牌" in response.text
        forged = manager.post(f"/tasks/{task.id}/{action}", data={"csrf_token": "forged"})
        assert forged.status_code == 400
    assert task_of(flow, "manager", record_id).status == "open"
    assert [h.action if hasattr(h, "action") else h["action"] for h in instance(flow, record_id).history] == ["submit"]


# ------------------------------------------------------------------ actions

def _history(app: Flask, record_id: int) -> list[str]:
    return [h["action"] if isinstance(h, dict) else h.action for h in instance(app, record_id).history]


def test_approve_moves_to_finance_then_approved(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager = login("manager")
    task = task_of(flow, "manager", record_id)
    response = post_action(manager, task.id, "approve", comment="同意，注意控制物料成本", version=str(task.version))
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    assert "已同意" in manager.get("/inbox").text  # the flash message
    state = instance(flow, record_id)
    assert state.status == "running" and list(state.current_steps) == ["finance_review"]
    assert tasks(flow, "manager2") == []  # 或签: the other manager's task is gone
    finance = login("finance")
    ftask = task_of(flow, "finance", record_id)
    page = finance.get(f"/tasks/{ftask.id}")
    assert "财务会签" in page.text and "同意，注意控制物料成本" in page.text
    assert re.findall(r'data-action="([a-z_]+)"', page.text) == ["approve", "reject", "return", "comment"]
    assert post_action(finance, ftask.id, "approve").status_code == 302
    assert instance(flow, record_id).status == "approved"
    assert flow.extensions["promoflow"].records.get(record_id).data["status"] == "approved"
    assert "approve" in _history(flow, record_id)


def test_small_budget_skips_finance(flow: Flask, login) -> None:
    record_id = submit(flow, budget="12000.00")
    assert post_action(login("manager"), task_of(flow, "manager", record_id).id, "approve").status_code == 302
    assert instance(flow, record_id).status == "approved" and tasks(flow, "finance") == []


def test_acting_twice_or_on_a_closed_task_is_409_with_the_state(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager, manager2 = login("manager"), login("manager2")
    task = task_of(flow, "manager", record_id)
    other = task_of(flow, "manager2", record_id)
    token = csrf_from(manager.get(f"/tasks/{task.id}").text)
    assert manager.post(f"/tasks/{task.id}/approve", data={"csrf_token": token}).status_code == 302
    again = manager.post(f"/tasks/{task.id}/approve", data={"csrf_token": token})  # a second click
    assert again.status_code == 409
    assert "任务已被处理" in again.text and "审批中" in again.text and "财务会签" in again.text
    late = post_action(manager2, other.id, "reject", comment="太贵")
    assert late.status_code == 409 and "审批记录" in late.text
    assert instance(flow, record_id).status == "running"
    # a closed task's page is read-only
    page = manager.get(f"/tasks/{task.id}")
    assert page.status_code == 200 and "此任务已处理" in page.text and 'data-action="approve"' not in page.text


def test_comment_keeps_the_task_and_a_stale_version_is_409(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager = login("manager")
    task = task_of(flow, "manager", record_id)
    response = post_action(manager, task.id, "comment", comment="先看看", version=str(task.version))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tasks/{task.id}")
    assert task_of(flow, "manager", record_id).status == "open" and "先看看" in manager.get(f"/tasks/{task.id}").text
    stale = post_action(manager, task.id, "approve", version=str(task.version + 5))
    assert stale.status_code == 409 and "已变化" in stale.text and "审批中" in stale.text
    assert instance(flow, record_id).status == "running"


def test_reject_ends_the_flow(flow: Flask, login) -> None:
    record_id = submit(flow)
    response = post_action(login("manager"), task_of(flow, "manager", record_id).id, "reject", comment="预算过高")
    assert response.status_code == 302
    assert instance(flow, record_id).status == "rejected"
    page = login("staff").get(f"/records/{record_id}")
    assert "已驳回" in page.text and "预算过高" in page.text


def test_transfer_needs_a_user_and_hands_the_task_over(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager = login("manager")
    task = task_of(flow, "manager", record_id)
    missing = post_action(manager, task.id, "transfer")
    assert missing.status_code == 422 and "请选择" in missing.text
    unknown = post_action(manager, task.id, "transfer", target="ghost")
    assert unknown.status_code == 422 and "ghost" in unknown.text
    assert post_action(manager, task.id, "transfer", target="director", comment="总监定").status_code == 302
    assert tasks(flow, "manager") == [] and task_of(flow, "director", record_id)
    timeline = login("staff").get(f"/records/{record_id}").text
    assert "转交" in timeline and "总监定" in timeline


def test_long_comment_is_refused_on_the_page(flow: Flask, login) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    response = post_action(login("manager"), task.id, "approve", comment="长" * 2001)
    assert response.status_code == 422 and "2000" in response.text
    assert instance(flow, record_id).status == "running"


# ------------------------------------------------------------------ submitter's view

def test_record_page_shows_status_current_step_assignees_and_timeline(flow: Flask, login) -> None:
    record_id = submit(flow)
    staff = login("staff")
    page = staff.get(f"/records/{record_id}")
    html = page.text
    assert page.status_code == 200
    assert 'data-workflow-status="running"' in html and "审批中" in html
    assert "市场经理审批" in html and "manager" in html and "manager2" in html
    assert "<svg" in html and "提交申请" in html
    assert "撤回" in html  # nobody has acted yet
    post_action(login("manager"), task_of(flow, "manager", record_id).id, "approve", comment="可以")
    html = staff.get(f"/records/{record_id}").text
    assert "财务会签" in html and "finance" in html and "可以" in html
    assert f'action="/records/{record_id}/withdraw"' not in html
    post_action(login("finance"), task_of(flow, "finance", record_id).id, "approve")
    html = staff.get(f"/records/{record_id}?lang=zh").text
    assert 'data-workflow-status="approved"' in html and "已批准" in html
    english = staff.get(f"/records/{record_id}?lang=en").text
    assert "Approved" in english and "Timeline" in english


def test_a_record_without_a_workflow_has_no_panel(flow: Flask, login) -> None:
    html = login("staff").get("/").text
    assert "data-workflow-status" not in html


def test_withdraw_before_anyone_acts(flow: Flask, login) -> None:
    record_id = submit(flow)
    staff = login("staff")
    page = staff.get(f"/records/{record_id}")
    # only the submitter may withdraw
    other = login("staff2")
    assert other.post(f"/records/{record_id}/withdraw",
                      data={"csrf_token": csrf_from(other.get("/").text)}).status_code in (403, 404)
    assert staff.post(f"/records/{record_id}/withdraw").status_code == 400  # no CSRF token
    response = staff.post(f"/records/{record_id}/withdraw", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    assert instance(flow, record_id).status == "withdrawn" and tasks(flow, "manager") == []
    assert "已撤回" in staff.get(f"/records/{record_id}").text


def test_no_withdraw_after_an_approver_acted(flow: Flask, login) -> None:
    record_id = submit(flow)
    staff = login("staff")
    token = csrf_from(staff.get(f"/records/{record_id}").text)
    post_action(login("manager"), task_of(flow, "manager", record_id).id, "approve")
    response = staff.post(f"/records/{record_id}/withdraw", data={"csrf_token": token})
    assert response.status_code == 302
    assert "不能撤回" in staff.get(response.headers["Location"]).text
    assert instance(flow, record_id).status == "running"


def test_return_then_edit_and_resubmit(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager = login("manager")
    response = post_action(manager, task_of(flow, "manager", record_id).id, "return", comment="请补充物料明细")
    assert response.status_code == 302
    assert instance(flow, record_id).status == "returned"
    staff = login("staff")
    page = staff.get(f"/records/{record_id}")
    assert "已退回" in page.text and "请补充物料明细" in page.text
    assert f'href="/records/{record_id}/resubmit"' in page.text
    assert login("staff2").get(f"/records/{record_id}/resubmit").status_code in (403, 404)
    form = staff.get(f"/records/{record_id}/resubmit")
    assert form.status_code == 200 and 'value="春季促销"' in form.text
    bad = staff.post(f"/records/{record_id}/resubmit",
                     data={**valid_activity_form(budget="abc"), "csrf_token": csrf_from(form.text)})
    assert bad.status_code == 422 and instance(flow, record_id).status == "returned"
    done = staff.post(f"/records/{record_id}/resubmit",
                      data={**valid_activity_form(budget="55000", name="春季促销（修订）"),
                            "csrf_token": csrf_from(form.text)})
    assert done.status_code == 302, done.text
    state = instance(flow, record_id)
    assert state.status == "running" and list(state.current_steps) == ["manager_review"]
    assert flow.extensions["promoflow"].records.get(record_id).data["name"] == "春季促销（修订）"
    assert task_of(flow, "manager", record_id).status == "open"
    assert _history(flow, record_id)[-1] in ("resubmit", "task_created") or "resubmit" in _history(flow, record_id)
    # not returned any more: no second resubmit
    assert staff.get(f"/records/{record_id}/resubmit").status_code == 409
