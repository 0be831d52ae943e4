"""The task API on both databases: ``GET /api/v1/tasks``, the actions
``POST /api/v1/tasks/<id>/approve|reject|return|transfer`` (200 with the
state, 403 not assigned, 404 unknown, 409 closed or stale with the current
state, 400 malformed bodies), ``GET /api/v1/records/<id>/workflow``, and
their place in the OpenAPI document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from test_web_inbox import EXTRA_USERS, add_extra_users, submit, task_of, tasks
from web_support import NOW, bearer


@pytest.fixture
def flow(app: Flask) -> Flask:
    return add_extra_users(app)


def _tokens(app: Flask, tokens: dict[str, str]) -> dict[str, str]:
    accounts = app.extensions["promoflow"].accounts
    return {**tokens, **{name: accounts.create_token(name, now=NOW) for name in EXTRA_USERS}}


def _act(client: Any, token: str, task_id: int, action: str, body: Any = None, **kwargs: Any) -> Any:
    return client.post(f"/api/v1/tasks/{task_id}/{action}", headers=bearer(token), json=body, **kwargs)


def test_list_tasks_is_the_callers_own(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    response = client.get("/api/v1/tasks", headers=bearer(tok["manager"]))
    assert response.status_code == 200
    body = response.get_json()
    assert [(t["record_id"], t["step_id"], t["status"], t["assignee"]) for t in body["items"]] == [
        (record_id, "manager_review", "open", "manager")]
    item = body["items"][0]
    assert set(item) >= {"id", "instance_id", "form_id", "step_title", "due_at", "overdue", "version", "created_at"}
    assert item["form_id"] == "activity_request" and item["overdue"] is False
    assert body["counts"]["open"] == 1
    for user in ("staff", "finance", "outsider"):
        assert client.get("/api/v1/tasks", headers=bearer(tok[user])).get_json()["items"] == []
    assert client.get("/api/v1/tasks?status=done", headers=bearer(tok["manager"])).get_json()["items"] == []
    bad = client.get("/api/v1/tasks?status=nope", headers=bearer(tok["manager"]))
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_query"
    assert client.get("/api/v1/tasks").status_code == 401


def test_approve_then_finance_approves(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    task = task_of(flow, "manager", record_id)
    response = _act(client, tok["manager"], task.id, "approve", {"comment": "同意", "version": task.version})
    assert response.status_code == 200, response.text
    state = response.get_json()
    assert state["record_id"] == record_id and state["status"] == "running"
    assert state["current_steps"] == ["finance_review"] and state["workflow_id"] == "activity_approval"
    assert [h["action"] for h in state["history"]][:2] == ["submit", "approve"]
    assert state["history"][1]["actor"] == "manager" and state["history"][1]["comment"] == "同意"
    ftask = task_of(flow, "finance", record_id)
    done = _act(client, tok["finance"], ftask.id, "approve")  # no body at all
    assert done.status_code == 200 and done.get_json()["status"] == "approved"
    workflow = client.get(f"/api/v1/records/{record_id}/workflow", headers=bearer(tok["staff"]))
    assert workflow.status_code == 200
    body = workflow.get_json()
    assert body["status"] == "approved" and body["current_steps"] == []
    assert {"submit", "approve"} <= {h["action"] for h in body["history"]}
    assert all(isinstance(h["at"], str) for h in body["history"])


def test_not_assigned_403_unknown_404(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    task = task_of(flow, "manager", record_id)
    response = _act(client, tok["finance"], task.id, "approve", {"comment": "我来批"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "not_assigned"
    missing = _act(client, tok["manager"], 999999, "approve", {})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    assert _act(client, tok["manager"], task.id, "dance", {}).status_code == 404
    assert client.post(f"/api/v1/tasks/{task.id}/approve").status_code == 401
    assert task_of(flow, "manager", record_id).status == "open"


def test_finished_or_stale_is_409_with_the_current_state(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    task = task_of(flow, "manager", record_id)
    other = task_of(flow, "manager2", record_id)
    assert _act(client, tok["manager"], task.id, "approve", {}).status_code == 200
    twice = _act(client, tok["manager"], task.id, "approve", {})
    assert twice.status_code == 409
    error = twice.get_json()["error"]
    assert error["code"] == "task_closed"
    assert error["current"]["status"] == "running" and error["current"]["current_steps"] == ["finance_review"]
    late = _act(client, tok["manager2"], other.id, "reject", {"comment": "太贵"})
    assert late.status_code == 409 and late.get_json()["error"]["current"]["record_id"] == record_id
    # a stale version on an open task
    ftask = task_of(flow, "finance", record_id)
    stale = _act(client, tok["finance"], ftask.id, "approve", {"version": ftask.version + 7})
    assert stale.status_code == 409
    assert stale.get_json()["error"]["code"] == "stale_task" and "current" in stale.get_json()["error"]
    assert task_of(flow, "finance", record_id).status == "open"


def test_return_reject_and_transfer(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    client = flow.test_client()
    returned = submit(flow)
    response = _act(client, tok["manager"], task_of(flow, "manager", returned).id, "return", {"comment": "补充"})
    assert response.status_code == 200 and response.get_json()["status"] == "returned"
    rejected = submit(flow)
    response = _act(client, tok["manager"], task_of(flow, "manager", rejected).id, "reject", {"comment": "不行"})
    assert response.status_code == 200 and response.get_json()["status"] == "rejected"
    moved = submit(flow)
    task = task_of(flow, "manager", moved)
    bad = _act(client, tok["manager"], task.id, "transfer", {"target": "ghost"})
    assert bad.status_code == 422 and bad.get_json()["error"]["code"] == "invalid_target"
    response = _act(client, tok["manager"], task.id, "transfer", {"target": "director", "comment": "请总监"})
    assert response.status_code == 200
    assert task_of(flow, "director", moved).step_id == "manager_review"
    assert [t for t in tasks(flow, "manager") if t.record_id == moved] == []


def test_malformed_action_bodies_are_400(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    task = task_of(flow, "manager", record_id)
    headers = {**bearer(tok["manager"]), "Content-Type": "application/json"}
    for body in ("{", "[]", '"x"', '{"comment": 5}', '{"version": "3"}', '{"version": true}',
                 '{"target": ""}', '{"colour": "red"}', '{"comment": "' + "x" * 2001 + '"}'):
        response = client.post(f"/api/v1/tasks/{task.id}/approve", headers=headers, data=body)
        assert response.status_code == 400, body
        assert set(response.get_json()["error"]) >= {"code", "message"}
    assert task_of(flow, "manager", record_id).status == "open"


def test_record_workflow_permissions(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    record_id = submit(flow)
    client = flow.test_client()
    for user in ("staff", "manager", "finance", "admin"):
        assert client.get(f"/api/v1/records/{record_id}/workflow", headers=bearer(tok[user])).status_code == 200
    assert client.get(f"/api/v1/records/{record_id}/workflow", headers=bearer(tok["staff2"])).status_code == 403
    assert client.get("/api/v1/records/999999/workflow", headers=bearer(tok["staff"])).status_code == 404


def test_openapi_lists_the_task_endpoints(flow: Flask) -> None:
    doc = flow.test_client().get("/api/v1/openapi.json").get_json()
    paths = doc["paths"]
    assert "get" in paths["/tasks"] and "get" in paths["/records/{record_id}/workflow"]
    for action in ("approve", "reject", "return", "transfer"):
        operation = paths[f"/tasks/{{task_id}}/{action}"]["post"]
        assert {"200", "403", "404", "409"} <= set(operation["responses"])
    schemas = doc["components"]["schemas"]
    assert {"200", "400", "401"} <= set(paths["/tasks/bulk"]["post"]["responses"])
    assert "get" in paths["/records/{record_id}/files/{field}/{file_id}"]
    for name in ("Task", "HistoryEntry", "WorkflowInstance", "TaskConflict", "TaskAction", "TaskList", "TaskBulk",
                 "TaskBulkResult"):
        Draft202012Validator.check_schema(schemas[name])
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)):
        assert ref in schemas, ref


def test_bulk_approve_api(flow: Flask, tokens: dict[str, str]) -> None:
    tok = _tokens(flow, tokens)
    client = flow.test_client()
    first, second = submit(flow, budget="3000.00"), submit(flow, budget="3000.00")
    ids = [task_of(flow, "manager", first).id, task_of(flow, "manager", second).id]
    bulk = client.post("/api/v1/tasks/bulk", headers=bearer(tok["manager"]),
                       json={"task_ids": [*ids, 424242], "action": "approve", "comment": "同意"})
    assert bulk.status_code == 200, bulk.text
    body = bulk.get_json()
    assert (body["done"], body["failed"]) == (2, 1)
    schemas = client.get("/api/v1/openapi.json").get_json()["components"]["schemas"]
    Draft202012Validator(schemas["TaskBulkResult"]).validate(body)
    request_schema = Draft202012Validator(schemas["TaskBulk"])
    request_schema.validate({"task_ids": ids, "action": "approve", "comment": "同意"})
    assert [(r["task_id"], r["ok"], r["code"]) for r in body["results"]] == [
        (ids[0], True, None), (ids[1], True, None), (424242, False, "task_not_found")]
    records = flow.extensions["promoflow"].records
    assert records.get(first).status == records.get(second).status == "approved"
    # someone else's tasks are refused one by one, nothing else happens
    third = submit(flow, budget="3000.00")
    refused = client.post("/api/v1/tasks/bulk", headers=bearer(tok["staff"]),
                          json={"task_ids": [task_of(flow, "manager", third).id]}).get_json()
    assert refused["results"][0]["code"] == "not_assigned" and records.get(third).status == "in_review"
    for bad in ({}, {"task_ids": []}, {"task_ids": ["1"]}, {"task_ids": [1], "action": "return"},
                {"task_ids": [1], "extra": 1}, {"task_ids": list(range(1, 300))}, [1, 2]):
        assert not request_schema.is_valid(bad), bad  # the document refuses what the API refuses
        assert client.post("/api/v1/tasks/bulk", headers=bearer(tok["manager"]), json=bad).status_code == 400, bad
    assert client.post("/api/v1/tasks/bulk", json={"task_ids": [1]}).status_code == 401
