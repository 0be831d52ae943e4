"""An approved activity request becomes a campaign (issue 14, item 1),
through the product: a staff member submits the shipped ``activity_request``
form over the API, the marketing manager approves the task over the API, and
the campaign is listed with the request's dates, budget, channel, materials
(the sub-table's cost) and targets. A rejected request makes none."""

from __future__ import annotations

from typing import Any

from flask import Flask

from .support import bearer


def _request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "春季会员回归", "channel": "sms", "budget": "12000.00", "start_date": "2025-03-05",
        "end_date": "2025-03-20", "discount_type": "coupon", "coupon_value": "20",
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "3.50"}, {"item": "台卡", "qty": 4, "unit_cost": "12.00"}],
        "targets": [{"metric": "new_customers", "target": 500}, {"metric": "average_order_value", "target": 200}],
        "target_store": "all"}
    body.update(overrides)
    return body


def _submit_and_decide(app: Flask, tokens: dict[str, str], action: str, **overrides: Any) -> int:
    client = app.test_client()
    made = client.post("/api/v1/forms/activity_request/records", json=_request(**overrides),
                       headers=bearer(tokens["staff"]))
    assert made.status_code == 201, made.text
    record_id = int(made.get_json()["id"])
    tasks = client.get("/api/v1/tasks", headers=bearer(tokens["mm"])).get_json()
    items = tasks.get("items", tasks) if isinstance(tasks, dict) else tasks
    task = next(t for t in items if t["record_id"] == record_id)
    body = {"comment": "同意" if action == "approve" else "预算不清楚"}
    done = client.post(f"/api/v1/tasks/{task['id']}/{action}", headers=bearer(tokens["mm"]), json=body)
    assert done.status_code == 200, done.text
    return record_id


def test_an_approved_request_becomes_a_planned_campaign(app: Flask, tokens: dict[str, str]) -> None:
    record_id = _submit_and_decide(app, tokens, "approve")
    client = app.test_client()
    got = client.get(f"/api/v1/campaigns/request_{record_id}", headers=bearer(tokens["mm"]))
    assert got.status_code == 200, got.text
    c = got.get_json()
    assert (c["title"], c["source"], c["record_id"], c["owner"]) == ("春季会员回归", "request", record_id, "staff")
    assert (c["starts_on"], c["ends_on"], c["status"], c["channel"]) == ("2025-03-05", "2025-03-20", "planned", "sms")
    assert (c["budget"], c["materials_cost"]) == ("12000.00", "83.00")  # 10 × 3.50 + 4 × 12.00
    assert c["targets"] == [{"metric": "new_customers", "target": "500"},
                            {"metric": "average_order_value", "target": "200"}]
    assert c["forms"] == ["activity_request"] and c["attribution_window_days"] == 7
    kpis = client.get(f"/api/v1/campaigns/request_{record_id}/kpis", headers=bearer(tokens["fin"])).get_json()
    assert kpis["costs"] == [{"category": "materials", "amount": "83.00"}] and kpis["total_cost"] == "83.00"
    assert kpis["budget_used_rate"] == round(83 / 12000, 6)


def test_a_rejected_request_makes_no_campaign(app: Flask, tokens: dict[str, str]) -> None:
    record_id = _submit_and_decide(app, tokens, "reject")
    client = app.test_client()
    assert client.get(f"/api/v1/campaigns/request_{record_id}", headers=bearer(tokens["mm"])).status_code == 404
    ids = [c["id"] for c in client.get("/api/v1/campaigns", headers=bearer(tokens["mm"])).get_json()["items"]]
    assert ids == ["member_winback"]
