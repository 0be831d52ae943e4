"""Separation of duties on both databases, through the task API and the task
page: a transfer never hands a task to the submitter or to someone who already
decided on the request (422 with a zh/en reason), and the page does not offer
them. The shipped ``activity_approval``: marketing managers (any one, may
transfer) → finance (every one, above 50,000, rejects back to the managers).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from test_web_inbox import EXTRA_USERS, add_extra_users, instance, post_action, submit, task_of, tasks
from web_support import NOW, bearer


@pytest.fixture
def flow(app: Flask) -> Flask:
    return add_extra_users(app)


def _tokens(app: Flask, tokens: dict[str, str]) -> dict[str, str]:
    accounts = app.extensions["promoflow"].accounts
    return {**tokens, **{name: accounts.create_token(name, now=NOW) for name in EXTRA_USERS}}


def _transfer(client: Any, token: str, task_id: int, target: str, lang: str = "zh") -> Any:
    return client.post(f"/api/v1/tasks/{task_id}/transfer", headers={**bearer(token), "Accept-Language": lang},
                       json={"target": target})


def _error_schema(client: Any, action: str = "transfer") -> Draft202012Validator:
    doc = client.get("/api/v1/openapi.json").get_json()
    response = doc["paths"][f"/tasks/{{task_id}}/{action}"]["post"]["responses"]["422"]
    schema = {**response["content"]["application/json"]["schema"], "components": doc["components"]}
    return Draft202012Validator(schema)


def _rejected_back_to_the_managers(flow: Flask, tok: dict[str, str]) -> int:
    """manager approves, finance rejects back (reject_to) to manager_review."""
    client = flow.test_client()
    record_id = submit(flow)
    assert client.post(f"/api/v1/tasks/{task_of(flow, 'manager', record_id).id}/approve",
                       headers=bearer(tok["manager"]), json={}).status_code == 200
    back = client.post(f"/api/v1/tasks/{task_of(flow, 'finance', record_id).id}/reject",
                       headers=bearer(tok["finance"]), json={"comment": "预算再核"})
    assert back.status_code == 200 and back.get_json()["current_steps"] == ["manager_review"]
    return record_id


def test_api_refuses_to_transfer_to_the_submitter(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    client = flow.test_client()
    record_id = submit(flow, user="staff")
    task = task_of(flow, "manager", record_id)
    zh = _transfer(client, tok["manager"], task.id, "staff", "zh")
    assert zh.status_code == 422
    assert zh.get_json()["error"]["code"] == "target_is_submitter"
    assert "提交人" in zh.get_json()["error"]["message"] and "职责分离" in zh.get_json()["error"]["message"]
    _error_schema(client).validate(zh.get_json())
    en = _transfer(client, tok["manager"], task.id, "staff", "en")
    assert en.status_code == 422 and "submitted this request" in en.get_json()["error"]["message"]
    # nothing moved: the manager still holds the task, the submitter has none
    assert task_of(flow, "manager", record_id).status == "open"
    assert [t for t in tasks(flow, "staff") if t.record_id == record_id] == []
    assert [h["action"] for h in instance(flow, record_id).history] == ["submit"]


def test_api_refuses_someone_who_already_decided_and_accepts_someone_new(flow: Flask,
                                                                          tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    client = flow.test_client()
    record_id = _rejected_back_to_the_managers(flow, tok)
    task = task_of(flow, "manager2", record_id)
    refused = _transfer(client, tok["manager2"], task.id, "finance", "en")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "target_already_decided"
    assert "already decided" in refused.get_json()["error"]["message"]
    _error_schema(client).validate(refused.get_json())
    assert [t for t in tasks(flow, "finance") if t.record_id == record_id] == []
    moved = _transfer(client, tok["manager2"], task.id, "director")
    assert moved.status_code == 200
    assert task_of(flow, "director", record_id).step_id == "manager_review"


def _offered(html: str) -> set[str]:
    select = re.search(r'<select id="target" name="target">(.*?)</select>', html, re.S)
    assert select is not None
    return set(re.findall(r'<option value="([^"]+)"', select.group(1)))


def test_the_task_page_offers_neither_and_refuses_a_forged_choice(flow: Flask, tokens: dict[str, str],
                                                                  login: Any) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow, user="staff")
    manager = login("manager")
    task = task_of(flow, "manager", record_id)
    offered = _offered(manager.get(f"/tasks/{task.id}").text)
    assert "staff" not in offered and {"director", "manager2", "finance"} <= offered
    forged = post_action(manager, task.id, "transfer", target="staff")
    assert forged.status_code == 422 and "提交人" in forged.text
    assert task_of(flow, "manager", record_id).status == "open"

    decided = _rejected_back_to_the_managers(flow, tok)
    manager2 = login("manager2")
    task2 = task_of(flow, "manager2", decided)
    offered = _offered(manager2.get(f"/tasks/{task2.id}").text)
    assert not offered & {"staff", "finance"} and "director" in offered
    forged = post_action(manager2, task2.id, "transfer", target="finance")
    assert forged.status_code == 422 and "已对本申请做过审批决定" in forged.text


SOD_DEFS = """
- kind: form
  id: sod_request
  title: 加签测试
  fields:
    - {key: name, label: 名称, type: text, required: true}
  submit_roles: [staff, marketing]
- kind: workflow
  id: sod_flow
  title: 加签测试审批
  form: sod_request
  steps:
    - id: review
      approval: {role: marketing_manager, mode: all, allow: [add_approver]}
- kind: form
  id: sod_open_request
  title: 可自审
  fields:
    - {key: name, label: 名称, type: text, required: true}
  submit_roles: [staff, marketing]
- kind: workflow
  id: sod_open_flow
  title: 可自审审批
  form: sod_open_request
  allow_self_approval: true
  steps:
    - id: review
      approval: {role: marketing_manager, allow: [add_approver]}
"""


def test_api_add_approver_follows_the_same_rule_unless_the_workflow_allows_it(
        flow: Flask, tokens: dict[str, str], tmp_path: Any, login: Any) -> None:
    from engine.library import library_paths
    from engine.publishing import publish_paths

    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "sod.yaml").write_text(SOD_DEFS, encoding="utf-8")
    services = flow.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), tmp_path / "defs"], now=NOW)
    tok = _tokens(flow, tokens)
    client = flow.test_client()

    strict = int(services.records.create("sod_request", {"name": "A"}, actor="staff", now=services.now()).id)
    task = task_of(flow, "manager", strict)
    refused = client.post(f"/api/v1/tasks/{task.id}/add_approver", headers=bearer(tok["manager"]),
                          json={"target": "staff"})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "target_is_submitter"
    _error_schema(client, "add_approver").validate(refused.get_json())
    assert client.post(f"/api/v1/tasks/{task_of(flow, 'manager2', strict).id}/approve",
                       headers=bearer(tok["manager2"]), json={}).status_code == 200
    refused = client.post(f"/api/v1/tasks/{task.id}/add_approver", headers=bearer(tok["manager"]),
                          json={"target": "manager2"})
    assert refused.status_code == 422 and refused.get_json()["error"]["code"] == "target_already_decided"
    added = client.post(f"/api/v1/tasks/{task.id}/add_approver", headers=bearer(tok["manager"]),
                        json={"target": "director"})
    assert added.status_code == 200 and task_of(flow, "director", strict).step_id == "review"

    lenient = int(services.records.create("sod_open_request", {"name": "B"}, actor="staff", now=services.now()).id)
    task = task_of(flow, "manager", lenient)
    offered = _offered(login("manager").get(f"/tasks/{task.id}").text)
    assert "staff" in offered                      # the workflow allows it, so the page offers it
    added = client.post(f"/api/v1/tasks/{task.id}/add_approver", headers=bearer(tok["manager"]),
                        json={"target": "staff"})
    assert added.status_code == 200
    done = client.post(f"/api/v1/tasks/{task_of(flow, 'staff', lenient).id}/approve",
                       headers=bearer(tok["staff"]), json={})
    assert done.status_code == 200 and done.get_json()["status"] == "approved"

