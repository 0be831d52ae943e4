"""批量审批 on the inbox page, on both databases: a checkbox per open task and
a plain CSRF-protected form posting to ``/inbox/bulk``, which approves or
rejects the ticked tasks in one ``act_many`` call and redirects back with a
summary naming each refused task and why.

The shipped ``activity_approval``: marketing managers (any one) → finance
(only above 50,000) → approved.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_web_inbox import add_extra_users, instance, post_action, submit, task_of, tasks
from web_support import csrf_from


@pytest.fixture
def flow(app: Flask) -> Flask:
    return add_extra_users(app)


def _boxes(html: str) -> list[int]:
    """The task ids the inbox offers a checkbox for."""
    return [int(n) for n in re.findall(r'<input type="checkbox" name="task" value="(\d+)"', html)]


def _flashes(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<p class="flash ([a-z]+)">([^<]*)</p>', html)


def bulk(client: FlaskClient, task_ids: list[int], action: str = "approve", *, csrf: bool = True,
         **data: Any) -> Any:
    """POST the inbox's bulk form (with the inbox page's CSRF token)."""
    form: dict[str, Any] = {"task": [str(i) for i in task_ids], "action": action, **data}
    if csrf:
        form["csrf_token"] = csrf_from(client.get("/inbox").text)
    return client.post("/inbox/bulk", data=form)


def _history(app: Flask, record_id: int) -> list[tuple[str, str | None, str | None]]:
    rows = []
    for h in instance(app, record_id).history:
        get = h.get if isinstance(h, dict) else lambda k, h=h: getattr(h, k, None)
        rows.append((get("action"), get("actor"), get("comment")))
    return rows


# ------------------------------------------------------------------ the page

def test_inbox_offers_a_checkbox_per_open_task_and_the_bulk_form(flow: Flask, login) -> None:
    first, second = submit(flow), submit(flow, name="第二个活动")
    manager = login("manager")
    page = manager.get("/inbox")
    html = page.text
    mine = {task_of(flow, "manager", first).id, task_of(flow, "manager", second).id}
    assert set(_boxes(html)) == mine
    assert 'action="/inbox/bulk"' in html and 'name="csrf_token"' in html
    assert "批量同意" in html and "批量驳回" in html and "全选" in html
    assert re.search(r'<label class="check" hidden data-bulk-all>', html)  # shown by the script only
    assert '<script src="/static/inbox.js" defer></script>' in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "onclick" not in html and "<script>" not in html
    script = manager.get("/static/inbox.js")
    assert script.status_code == 200 and "eval(" not in script.text and "innerHTML" not in script.text
    english = manager.get("/inbox?lang=en").text
    assert "Approve selected" in english and "Reject selected" in english and "Select all" in english
    # nothing to tick: no form, no script
    for html in (login("finance").get("/inbox").text, manager.get("/inbox?status=done").text):
        assert _boxes(html) == [] and "/inbox/bulk" not in html and "inbox.js" not in html


# ------------------------------------------------------------------ approve

def test_two_tasks_approved_in_one_post_move_their_records_on(flow: Flask, login) -> None:
    small = submit(flow, name="小活动", budget="12000.00")
    big = submit(flow, name="大活动", budget="60000.00")
    manager = login("manager")
    ids = _boxes(manager.get("/inbox").text)
    assert sorted(ids) == sorted([task_of(flow, "manager", small).id, task_of(flow, "manager", big).id])
    response = bulk(manager, ids, comment="同意，注意成本")
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    page = manager.get("/inbox")
    assert ("success", "已同意 2 项") in _flashes(page.text)
    assert _boxes(page.text) == [] and tasks(flow, "manager") == []
    assert instance(flow, small).status == "approved"
    assert flow.extensions["promoflow"].records.get(small).data["status"] == "approved"
    state = instance(flow, big)
    assert state.status == "running" and list(state.current_steps) == ["finance_review"]
    assert [t.record_id for t in tasks(flow, "finance")] == [big]
    assert tasks(flow, "manager2") == []  # 或签: the other manager's tasks are gone
    assert ("approve", "manager", "同意，注意成本") in _history(flow, big)
    assert "同意，注意成本" in login("staff").get(f"/records/{big}").text


def test_a_mix_refuses_each_task_that_is_not_the_users_and_does_the_rest(flow: Flask, login) -> None:
    mine = submit(flow, name="我的", budget="12000.00")
    others = submit(flow, name="别人的", budget="12000.00")
    handled = submit(flow, name="已处理", budget="12000.00")
    finance_record = submit(flow, name="财务的")
    manager = login("manager")
    post_action(manager, task_of(flow, "manager", handled).id, "approve")
    handled_task = next(t for t in tasks(flow, "manager", "done") if t.record_id == handled)
    post_action(login("manager2"), task_of(flow, "manager2", finance_record).id, "approve")
    foreign = [task_of(flow, "manager2", others).id, task_of(flow, "finance", finance_record).id]
    mine_task = task_of(flow, "manager", mine).id
    response = bulk(manager, [foreign[0], mine_task, handled_task.id, foreign[1], 987654321])
    assert response.status_code == 302
    flashes = _flashes(manager.get("/inbox").text)
    assert len(flashes) == 1
    category, text = flashes[0]
    assert category == "info"
    assert text.startswith("已同意 1 项，4 项未处理：")
    assert f"不是您的任务（#{foreign[0]}、#{foreign[1]}）" in text
    assert f"已被处理（#{handled_task.id}）" in text and "任务不存在（#987654321）" in text
    assert "财务的" not in text and "别人的" not in text  # nothing about records that are not the user's
    # the user's task went through; nobody else's moved
    assert instance(flow, mine).status == "approved"
    assert task_of(flow, "manager2", others).status == "open" and instance(flow, others).status == "running"
    assert [h[0] for h in _history(flow, others)].count("approve") == 0
    assert task_of(flow, "finance", finance_record).status == "open"
    assert instance(flow, finance_record).status == "running"
    # all refused: an error, in English for an English reader
    english = login("manager2", lang="en")
    bulk(english, [task_of(flow, "finance", finance_record).id])
    assert ("error", f"0 approved; 1 not done: not your task (#{foreign[1]})") in _flashes(english.get("/inbox").text)
    # many refusals: ten ids per reason, then how many more (the flash lives in the session cookie)
    bulk(manager, list(range(900_001, 900_013)))
    ids = "、".join(f"#{i}" for i in range(900_001, 900_011))
    assert ("error", f"已同意 0 项，12 项未处理：任务不存在（{ids} 及另外 2 项）") in _flashes(manager.get("/inbox").text)


def test_reject_selected_with_a_comment(flow: Flask, login) -> None:
    first, second = submit(flow, name="一"), submit(flow, name="二")
    keep = submit(flow, name="三")
    manager = login("manager")
    ids = [task_of(flow, "manager", first).id, task_of(flow, "manager", second).id]
    response = bulk(manager, ids, "reject", comment="  预算过高，请合并申请  ")
    assert response.status_code == 302
    assert ("success", "已驳回 2 项") in _flashes(manager.get("/inbox").text)
    for record_id in (first, second):
        assert instance(flow, record_id).status == "rejected"
        assert flow.extensions["promoflow"].records.get(record_id).data["status"] == "rejected"
        assert ("reject", "manager", "预算过高，请合并申请") in _history(flow, record_id)
    assert "预算过高，请合并申请" in login("staff").get(f"/records/{first}").text
    assert instance(flow, keep).status == "running" and task_of(flow, "manager", keep).status == "open"
    # like the task page, a reject needs no comment
    assert bulk(manager, [task_of(flow, "manager", keep).id], "reject").status_code == 302
    assert instance(flow, keep).status == "rejected"


# ------------------------------------------------------------------ refusals

def test_posts_without_a_csrf_token_are_refused(flow: Flask, login) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    manager = login("manager")
    missing = bulk(manager, [task.id], csrf=False)
    assert missing.status_code == 400 and "安全令牌" in missing.text
    forged = bulk(manager, [task.id], csrf=False, csrf_token="forged")
    assert forged.status_code == 400
    assert task_of(flow, "manager", record_id).status == "open"
    assert [h[0] for h in _history(flow, record_id)] == ["submit"]


def test_more_than_the_limit_is_refused_and_nothing_is_acted(flow: Flask, login) -> None:
    first, second = submit(flow, budget="12000.00"), submit(flow, budget="12000.00")
    manager = login("manager")
    real = [task_of(flow, "manager", first).id, task_of(flow, "manager", second).id]
    limit = flow.extensions["promoflow"].workflows.BULK_LIMIT
    ids = real + list(range(10_000, 10_000 + limit - 1))  # limit + 1 distinct ids
    response = bulk(manager, ids)
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    assert ("error", f"一次最多处理 {limit} 项，您选择了 {limit + 1} 项；未做任何处理") in _flashes(
        manager.get("/inbox").text)
    for record_id in (first, second):
        assert instance(flow, record_id).status == "running"
        assert [h[0] for h in _history(flow, record_id)] == ["submit"]
    assert sorted(t.id for t in tasks(flow, "manager")) == sorted(real)
    # repeats count once: the limit itself is fine
    assert bulk(manager, real + real + list(range(10_000, 10_000 + limit - 2))).status_code == 302
    assert instance(flow, first).status == "approved" and instance(flow, second).status == "approved"


def test_an_empty_or_bad_selection_gives_a_message_not_an_error(flow: Flask, login) -> None:
    record_id = submit(flow)
    manager = login("manager")
    empty = bulk(manager, [], comment="同意")
    assert empty.status_code == 302
    page = manager.get("/inbox")
    assert page.status_code == 200 and ("error", "请先勾选要处理的任务") in _flashes(page.text)
    followed = manager.post("/inbox/bulk", data={"csrf_token": csrf_from(page.text), "action": "reject"},
                            follow_redirects=True)
    assert followed.status_code == 200 and "请先勾选要处理的任务" in followed.text
    for bad in (["abc"], ["-1"], ["0"], ["²"], ["9" * 40]):
        form = {"csrf_token": csrf_from(page.text), "action": "approve", "task": bad}
        assert manager.post("/inbox/bulk", data=form).status_code == 302
        assert ("error", "所选任务无效，未做任何处理") in _flashes(manager.get("/inbox").text)
    task = task_of(flow, "manager", record_id)
    for action in ("return", "transfer", ""):
        assert bulk(manager, [task.id], action).status_code == 400
    assert bulk(manager, [task.id], comment="长" * 2001).status_code == 302
    assert "2000" in manager.get("/inbox").text
    assert task_of(flow, "manager", record_id).status == "open" and instance(flow, record_id).status == "running"
    assert login("staff").get("/inbox/bulk").status_code == 405
    anonymous = flow.test_client()
    token = csrf_from(anonymous.get("/login").text)
    assert anonymous.post("/inbox/bulk", data={"csrf_token": token, "task": [str(task.id)],
                                               "action": "approve"}).status_code == 302  # to the login page
    assert task_of(flow, "manager", record_id).status == "open"


def test_a_non_ascii_digit_version_on_the_task_page_is_ignored_not_a_500(flow: Flask, login) -> None:
    record_id = submit(flow, budget="12000.00")
    response = post_action(login("manager"), task_of(flow, "manager", record_id).id, "approve", version="²")
    assert response.status_code == 302 and instance(flow, record_id).status == "approved"


def test_the_redirect_keeps_the_inbox_filters(flow: Flask, login) -> None:
    record_id = submit(flow, budget="12000.00")
    manager = login("manager")
    page = manager.get("/inbox?form=activity_request")
    assert 'name="back_form" value="activity_request"' in page.text
    response = manager.post("/inbox/bulk", data={
        "csrf_token": csrf_from(page.text), "action": "approve", "back_status": "all",
        "back_form": "activity_request", "task": [str(task_of(flow, "manager", record_id).id)]})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/inbox?") and "status=all" in location and "form=activity_request" in location
    assert instance(flow, record_id).status == "approved"
    odd = manager.post("/inbox/bulk", data={"csrf_token": csrf_from(page.text), "action": "approve",
                                            "back_status": "bogus", "back_form": "x" * 500})
    assert odd.headers["Location"].endswith("/inbox")
