"""The campaigns API (issue 14, items 1, 2, 5): the shipped campaign
definition is listed with its status, its links and targets; KPIs answer in
the documented shapes; costs are added with 422 field errors for bad input;
reading and writing are limited to their roles."""

from __future__ import annotations

from flask import Flask

from .support import bearer


def test_shipped_campaign_is_listed_running_with_links_and_targets(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    listed = client.get("/api/v1/campaigns", headers=bearer(tokens["mm"]))
    assert listed.status_code == 200, listed.text
    items = {c["id"]: c for c in listed.get_json()["items"]}
    winback = items["member_winback"]
    assert winback["status"] == "running"
    assert winback["rules"] == ["winback_90d"]
    assert winback["coupon_pools"] == ["winback20"]
    assert winback["budget"] == "50000.00"
    assert winback["attribution_window_days"] == 14
    assert {"metric": "converted_customers", "target": "500"} in winback["targets"]
    one = client.get("/api/v1/campaigns/member_winback", headers=bearer(tokens["fin"]))
    assert one.get_json() == winback
    assert client.get("/api/v1/campaigns?status=planned", headers=bearer(tokens["mm"])).get_json()["items"] == []
    bad = client.get("/api/v1/campaigns?status=soon", headers=bearer(tokens["mm"]))
    assert bad.status_code == 400 and "status" in bad.get_json()["error"]["message"]


def test_kpis_of_a_campaign_without_data_are_zero_and_unmeasurable(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    got = client.get("/api/v1/campaigns/member_winback/kpis", headers=bearer(tokens["mm"]))
    assert got.status_code == 200, got.text
    body = got.get_json()
    assert body["campaign_id"] == "member_winback"
    assert body["start"] == "2024-12-31T16:00:00Z"  # 2025-01-01 00:00 in Shanghai
    assert body["as_of"] == "2025-03-01T02:00:00Z"
    assert (body["audience"], body["sent"], body["attributed_revenue"]) == (0, 0, "0.00")
    assert body["conversion_rate"] is None and body["roi"] == -1.0
    assert body["total_cost"] == "3000.00"  # the definition's labour cost
    assert body["costs"] == [{"category": "labour", "amount": "3000.00"}]
    assert [t["metric"] for t in body["targets"]] == ["converted_customers", "average_order_value",
                                                      "redemption_rate"]
    assert body["targets"][0] == {"metric": "converted_customers", "target": "500.00", "actual": 0.0,
                                  "met": False, "higher_is_better": True}
    ranged = client.get("/api/v1/campaigns/member_winback/kpis?from=2025-02-01&to=2025-02-28",
                        headers=bearer(tokens["mm"]))
    assert ranged.status_code == 200
    assert (ranged.get_json()["start"], ranged.get_json()["end"]) == ("2025-01-31T16:00:00Z", "2025-02-28T16:00:00Z")
    bad = client.get("/api/v1/campaigns/member_winback/kpis?from=yesterday&to=2025-01-01T00:00",
                     headers=bearer(tokens["mm"]))
    assert bad.status_code == 422
    assert [e["field"] for e in bad.get_json()["errors"]] == ["from"]
    assert client.get("/api/v1/campaigns/nope/kpis", headers=bearer(tokens["mm"])).status_code == 404


def test_costs_are_added_by_api_and_counted(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    made = client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["fin"]),
                       json={"category": "media", "amount": "1200.50", "incurred_on": "2025-02-10", "note": "朋友圈广告"})
    assert made.status_code == 201, made.text
    assert made.get_json()["amount"] == "1200.50" and made.get_json()["created_by"] == "fin"
    listed = client.get("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["mm"])).get_json()
    assert [c["category"] for c in listed["items"]] == ["media"]
    body = client.get("/api/v1/campaigns/member_winback/kpis?refresh=1", headers=bearer(tokens["mm"])).get_json()
    assert body["total_cost"] == "4200.50"
    assert {"category": "media", "amount": "1200.50"} in body["costs"]


def test_bad_costs_answer_422_with_every_field_error(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    bad = client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["fin"]),
                      json={"category": "lunch", "amount": "-3.001", "incurred_on": "2025-13-01", "x": 1})
    assert bad.status_code == 422, bad.text
    fields = sorted(e["field"] for e in bad.get_json()["errors"])
    assert fields == ["amount", "category", "incurred_on", "x"]
    for body in ({"category": "media"}, {"category": "media", "amount": True}, {"category": "media", "amount": 0}):
        got = client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["fin"]), json=body)
        assert got.status_code == 422 and got.get_json()["errors"][0]["field"] == "amount"
    not_json = client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["fin"]), data="{")
    assert not_json.status_code == 400
    missing = client.post("/api/v1/campaigns/nope/costs", headers=bearer(tokens["fin"]),
                          json={"category": "media", "amount": 1})
    assert missing.status_code == 404


def test_roles(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    assert client.get("/api/v1/campaigns").status_code == 401
    assert client.get("/api/v1/campaigns", headers=bearer(tokens["staff"])).status_code == 403
    assert client.get("/api/v1/campaigns", headers=bearer(tokens["till"])).status_code == 403
    assert client.get("/api/v1/campaigns", headers=bearer(tokens["mkt"])).status_code == 200
    cost = {"category": "media", "amount": 1}
    assert client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["mkt"]),
                       json=cost).status_code == 403
    assert client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["mm"]),
                       json=cost).status_code == 201


def test_ending_a_campaign_early(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    ended = client.post("/api/v1/campaigns/member_winback/end", headers=bearer(tokens["mm"]))
    assert ended.status_code == 200 and ended.get_json()["status"] == "ended"
    assert ended.get_json()["ended_at"] == "2025-03-01T02:00:00Z"


def test_answers_match_the_openapi_document(app: Flask, tokens: dict[str, str]) -> None:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(doc, default_specification=DRAFT202012))

    def check(name: str, body: object) -> None:
        schema = {"$ref": f"urn:openapi#/components/schemas/{name}"}
        Draft202012Validator(schema, registry=registry).validate(body)

    assert {"/campaigns", "/campaigns/{campaign_id}/kpis", "/campaigns/{campaign_id}/costs"} <= set(doc["paths"])
    check("Campaign", client.get("/api/v1/campaigns/member_winback", headers=bearer(tokens["mm"])).get_json())
    check("CampaignKpis", client.get("/api/v1/campaigns/member_winback/kpis", headers=bearer(tokens["mm"])).get_json())
    made = client.post("/api/v1/campaigns/member_winback/costs", headers=bearer(tokens["fin"]),
                       json={"category": "labour", "amount": 10})
    check("CampaignCost", made.get_json())
