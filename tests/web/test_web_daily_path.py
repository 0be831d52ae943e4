"""The daily path's server side on both databases (issue 15): 退回 and 驳回
need a reason (page and API, a 422 field error the OpenAPI document
describes), the flash says what an action did, the 已处理 inbox shows my
decision and when. The browser walks are in test_web_daily_path_browser.py."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from flask import Flask
from test_web_customers import people  # noqa: F401 (a fixture)
from test_web_inbox import add_extra_users, post_action, submit, task_of
from web_support import NOW, bearer


@pytest.fixture
def flow(app: Flask) -> Flask:
    return add_extra_users(app)


def _token(app: Flask, user: str) -> str:
    return str(app.extensions["promoflow"].accounts.create_token(user, now=NOW))


def _history(app: Flask, record_id: int) -> list[str]:
    view = app.extensions["promoflow"].workflows.instance_for_record(record_id)
    return [h["action"] for h in view.history]


@pytest.mark.parametrize("action", ["reject", "return"])
def test_reject_and_return_need_a_reason_on_the_page(flow: Flask, login: Any, action: str) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    response = post_action(login("manager"), task.id, action, comment="   ")
    assert response.status_code == 422
    word = {"reject": "驳回", "return": "退回"}[action]
    assert f"{word}时请填写审批意见（原因）" in response.text
    assert _history(flow, record_id) == ["submit"]  # nothing happened
    done = post_action(login("manager"), task.id, action, comment="预算偏高")
    assert done.status_code == 302 and _history(flow, record_id)[:2] == ["submit", action]


@pytest.mark.parametrize("action", ["reject", "return"])
def test_reject_and_return_need_a_reason_in_the_api(flow: Flask, action: str) -> None:
    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    client = flow.test_client()
    token = _token(flow, "manager")
    doc = client.get("/api/v1/openapi.json").get_json()
    for body in ({}, {"comment": ""}, {"comment": " \n "}, {"comment": None}):
        response = client.post(f"/api/v1/tasks/{task.id}/{action}", json=body,
                               headers={**bearer(token), "Accept-Language": "en"})
        assert response.status_code == 422, body
        errors = response.get_json()["errors"]
        assert [(e["field"], e["code"]) for e in errors] == [("comment", "required")]
        schema = doc["paths"][f"/tasks/{{task_id}}/{action}"]["post"]["responses"]["422"]["content"][
            "application/json"]["schema"]
        jsonschema.validate(response.get_json(), {**schema, "components": doc["components"]})
    assert _history(flow, record_id) == ["submit"]
    ok = client.post(f"/api/v1/tasks/{task.id}/{action}", json={"comment": "请补充"}, headers=bearer(token))
    assert ok.status_code == 200


def test_the_flash_says_where_a_reject_sent_the_request(flow: Flask, login: Any) -> None:
    record_id = submit(flow)  # 60,000: manager → finance (reject_to manager_review)
    manager = login("manager")
    approved = post_action(manager, task_of(flow, "manager", record_id).id, "approve")
    assert "已同意，已转到「财务会签」" in manager.get(approved.headers["Location"]).text
    finance = login("finance")
    back = post_action(finance, task_of(flow, "finance", record_id).id, "reject", comment="预算再核")
    page = finance.get(back.headers["Location"]).text
    assert "已驳回，申请退回到「市场经理审批」重新审批" in page
    manager2 = login("manager2")
    final = post_action(manager2, task_of(flow, "manager2", record_id).id, "reject", comment="不做了")
    assert "已驳回，申请已结束并通知提交人" in manager2.get(final.headers["Location"]).text
    assert flow.extensions["promoflow"].workflows.instance_for_record(record_id).status == "rejected"


def test_the_done_inbox_shows_my_decision_and_when(flow: Flask, login: Any, clock: Any) -> None:
    from datetime import timedelta

    record_id = submit(flow)
    manager = login("manager")
    clock.now = NOW + timedelta(hours=3, minutes=5)  # 13:05 in Shanghai
    post_action(manager, task_of(flow, "manager", record_id).id, "return", comment="请补充物料")
    done = manager.get("/inbox?status=done").text
    assert "我的处理：退回 · 2025-03-01 13:05" in done
    english = manager.get("/inbox?status=done&lang=en").text
    assert "My decision: Returned for edits · 2025-03-01 13:05" in english


def _create(app: Flask, token: str, **overrides: Any) -> int:
    from web_support import valid_activity

    response = app.test_client().post("/api/v1/forms/activity_request/records", json=valid_activity(**overrides),
                                      headers=bearer(token))
    assert response.status_code == 201, response.text
    return int(response.json["id"])


def test_keyword_search_over_records_in_the_api_and_the_list(app: Flask, tokens: dict[str, str], login: Any) -> None:
    spring = _create(app, tokens["staff"], name="Spring Sale 春季促销", description="满100减20")
    odd = _create(app, tokens["staff"], name="100% off_day", description="")
    other = _create(app, tokens["staff2"], name="秋季清仓", description="门店 spring 试点")
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "q" in {p["name"] for p in doc["paths"]["/forms/activity_request/records"]["get"]["parameters"]}

    def found(q: str, user: str = "admin") -> set[int]:
        response = client.get("/api/v1/forms/activity_request/records", query_string={"q": q},
                              headers=bearer(tokens[user]))
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.get_json()["items"]}

    assert found("spring") == {spring, other}            # name or description, ASCII case ignored
    assert found("SPRING") == {spring, other}
    assert found("春季") == {spring}
    assert found("满100") == {spring}
    assert found("%") == {odd} and found("_") == {odd}   # wildcards are literal text
    assert found("100%") == {odd} and found("/") == set()
    assert found("  ") == {spring, odd, other}            # blank: no keyword
    assert found("spring", user="staff2") == {other}      # still only what the user may see
    assert found("x" * 5000) == set()
    page = login("admin").get("/forms/activity_request/records?q=%E6%98%A5%E5%AD%A3")  # 春季
    assert page.status_code == 200 and "Spring Sale 春季促销" in page.text and "秋季清仓" not in page.text
    assert 'name="q" value="春季"' in page.text
    csv = login("admin").get("/forms/activity_request/records.csv?q=spring").get_data(as_text=True)
    assert "Spring Sale" in csv and "秋季清仓" in csv and "100% off_day" not in csv


def test_customer_search_by_the_last_four_digits_of_a_phone(login: Any, people: dict[str, int]) -> None:
    client = login("manager")
    rows = 'class="customer"'
    assert client.get("/customers?q=5678").text.count(rows) == 1             # 138 1234 5678: 张三
    assert f'/customers/{people["zhang"]}"' in client.get("/customers?q=5678").text
    assert client.get("/customers?q=0100").text.count(rows) == 1             # +1 415 555 0100: Anna
    assert client.get("/customers?q=1390").text.count(rows) == 50            # still a prefix search too
    assert client.get("/customers?q=9999").text.count(rows) == 0


def test_remind_refusals(flow: Flask, login: Any, clock: Any) -> None:
    from datetime import timedelta

    from web_support import csrf_from

    record_id = submit(flow)
    task = task_of(flow, "manager", record_id)
    staff = login("staff")
    token = csrf_from(staff.get(f"/records/{record_id}").text)
    early = staff.post(f"/records/{record_id}/remind/{task.id}", data={"csrf_token": token})
    assert early.status_code == 302 and "此任务当前不能催办" in staff.get(f"/records/{record_id}").text
    assert "remind" not in _history(flow, record_id)
    clock.now = NOW + timedelta(hours=49)
    staff = login("staff")
    token = csrf_from(staff.get(f"/records/{record_id}").text)
    other = login("staff2")
    assert other.post(f"/records/{record_id}/remind/{task.id}",
                      data={"csrf_token": csrf_from(other.get("/").text)}).status_code in (403, 404)
    assert staff.post(f"/records/{record_id}/remind/999999", data={"csrf_token": token}).status_code == 404
    assert staff.post(f"/records/{record_id}/remind/{task.id}", data={}).status_code == 400  # CSRF
    assert staff.post(f"/records/{record_id}/remind/{task.id}", data={"csrf_token": token}).status_code == 302
    assert _history(flow, record_id).count("remind") == 1
