"""The REST API: status codes and exact bodies, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from flask import Flask
from web_support import NOW, bearer, valid_activity

URL = "/api/v1/forms/activity_request/records"


def test_create_returns_201_with_the_record(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    response = client.post(URL, json=valid_activity(), headers=bearer(tokens["staff"]))
    assert response.status_code == 201, response.text
    body = response.get_json()
    assert body == {
        "id": body["id"], "form_id": "activity_request", "form_version": 1,
        "data": {"name": "春季促销", "channel": "sms", "budget": "12000.00", "start_date": "2025-03-05",
                 "end_date": "2025-03-20", "discount_type": "coupon", "coupon_value": "20.00",
                 "materials": [{"item": "海报", "qty": 10, "unit_cost": "3.50"}], "target_store": "all",
                 "status": "draft"},
        "created_by": "staff", "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(),
        "version": 1, "status": body["status"],
    }
    assert response.headers["Location"] == f"/api/v1/records/{body['id']}"
    assert response.headers["ETag"] == '"1"'
    stored = client.get(f"/api/v1/records/{body['id']}", headers=bearer(tokens["staff"])).get_json()
    # The activity approval starts in the create transaction and puts the record in review.
    assert body["status"] == "in_review"
    assert stored == body


def test_invalid_data_is_422_with_field_errors(app: Flask, tokens: dict[str, str]) -> None:
    payload = valid_activity(budget="-5", end_date="2025-03-01", discount_type="percent", coupon_value=None)
    del payload["name"]
    response = app.test_client().post(URL, json=payload, headers=bearer(tokens["staff"]))
    assert response.status_code == 422
    assert response.get_json() == {"errors": [
        {"field": "name", "code": "required", "message": "必填"},
        {"field": "budget", "code": "min", "message": "不能小于 0"},
        {"field": "end_date", "code": "after", "message": "必须晚于「开始日期」"},
        {"field": "discount_percent", "code": "required", "message": "必填"},
    ]}


def test_error_messages_follow_the_language(app: Flask, tokens: dict[str, str]) -> None:
    response = app.test_client().post(URL + "?lang=en", json=valid_activity(name=""), headers=bearer(tokens["staff"]))
    assert response.status_code == 422
    assert response.get_json() == {"errors": [{"field": "name", "code": "required",
                                               "message": "This field is required"}]}


def test_no_or_bad_token_is_401_json(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    missing = client.post(URL, json=valid_activity())
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.get_json()["error"]["code"] == "unauthorized"
    wrong = client.get(URL, headers=bearer("pf_not-a-token"))
    assert wrong.status_code == 401
    assert wrong.get_json()["error"] == {"code": "invalid_token", "message": "the token is invalid or revoked"}
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = client.get(URL, headers={"Authorization": "Basic c3RhZmY6c2VjcmV0"})
    assert basic.status_code == 401


def test_session_cookie_does_not_authenticate_the_api(app: Flask, login, tokens: dict[str, str]) -> None:
    client = login("staff")
    assert client.get(URL).status_code == 401


def test_revoked_token_is_401(app: Flask, tokens: dict[str, str]) -> None:
    app.extensions["promoflow"].accounts.revoke_tokens("staff", now=NOW)
    assert app.test_client().get(URL, headers=bearer(tokens["staff"])).status_code == 401


def test_without_the_role_403(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    response = client.post(URL, json=valid_activity(), headers=bearer(tokens["outsider"]))
    assert response.status_code == 403
    assert response.get_json() == {"error": {
        "code": "forbidden", "message": "submitting `activity_request` needs one of the roles: staff, marketing"}}
    assert client.get(URL, headers=bearer(tokens["outsider"])).status_code == 403
    # a viewer may read but not submit
    assert client.post(URL, json=valid_activity(), headers=bearer(tokens["manager"])).status_code == 403


def test_unknown_form_and_record_404(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    response = client.post("/api/v1/forms/nope/records", json={}, headers=bearer(tokens["staff"]))
    assert response.status_code == 404
    assert response.get_json() == {"error": {"code": "not_found", "message": "no published form `nope`"}}
    assert client.get("/api/v1/records/999999", headers=bearer(tokens["admin"])).get_json() == {
        "error": {"code": "not_found", "message": "no record 999999"}}
    unknown_route = client.get("/api/v1/nothing-here", headers=bearer(tokens["staff"]))
    assert unknown_route.status_code == 404 and unknown_route.is_json


def test_malformed_json_400(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    headers = {**bearer(tokens["staff"]), "Content-Type": "application/json"}
    for body, message in [
        (b"", "the body is empty; send a JSON object"),
        (b"{not json", None),
        (b"\xff\xfe{}", "the body is not UTF-8"),
        (b'{"budget": NaN}', None),
        (b"[" * 100_000 + b"]" * 100_000, None),
    ]:
        response = client.post(URL, data=body, headers=headers)
        assert response.status_code == 400, (body[:20], response.text)
        error = response.get_json()["error"]
        assert error["code"] == "bad_request"
        if message:
            assert error["message"] == message


def test_non_object_json_is_422(app: Flask, tokens: dict[str, str]) -> None:
    response = app.test_client().post(URL, json=[1, 2], headers=bearer(tokens["staff"]))
    assert response.status_code == 422
    assert response.get_json() == {"errors": [{"field": "", "code": "object_type", "message": "应为对象"}]}


def test_body_over_the_limit_413(app: Flask, tokens: dict[str, str]) -> None:
    huge = json.dumps(valid_activity(description="x" * (10 * 1024 * 1024)))
    response = app.test_client().post(URL, data=huge, headers={**bearer(tokens["staff"]),
                                                               "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"


def test_list_filters_sort_and_pages(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    for i, (who, budget, channel) in enumerate([("staff", "100", "sms"), ("staff", "5000", "email"),
                                                ("staff2", "300", "sms"), ("staff", "700", "sms")]):
        r = client.post(URL, json=valid_activity(name=f"a{i}", budget=budget, channel=channel),
                        headers=bearer(tokens[who]))
        assert r.status_code == 201, r.text
    # staff sees only their own three records
    own = client.get(URL + "?sort=budget", headers=bearer(tokens["staff"])).get_json()
    assert own["total"] == 3 and [r["data"]["name"] for r in own["items"]] == ["a0", "a3", "a1"]
    # the manager (view role) sees all; filters by field and by condition
    mgr = bearer(tokens["manager"])
    assert client.get(URL, headers=mgr).get_json()["total"] == 4
    sms = client.get(URL + "?channel=sms&sort=-budget", headers=mgr).get_json()
    assert [r["data"]["name"] for r in sms["items"]] == ["a3", "a2", "a0"]
    where = json.dumps({"budget": {"gt": 500}})
    big = client.get(URL, query_string={"where": where, "sort": "budget"}, headers=mgr).get_json()
    assert [r["data"]["name"] for r in big["items"]] == ["a3", "a1"]
    paged = client.get(URL + "?per_page=3&page=2&sort=created_at", headers=mgr).get_json()
    assert (paged["total"], paged["page"], paged["per_page"], paged["pages"], len(paged["items"])) == (4, 2, 3, 2, 1)


def test_list_bad_query_400(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    mgr = bearer(tokens["manager"])
    cases = {
        "where=%7Bbad": "`where` is not valid JSON",
        "where=%5B1%5D": None,
        "where=%7B%22budgt%22%3A%201%7D": None,
        "sort=nope": "cannot sort by `nope`",
        "page=0": "`page` must be between 1 and 1000000",
        "per_page=x": "`per_page` must be a whole number",
        "budgt=5": "cannot filter on `budgt`; did you mean `budget`?",
    }
    for query, message in cases.items():
        response = client.get(f"{URL}?{query}", headers=mgr)
        assert response.status_code == 400, (query, response.text)
        if message:
            assert response.get_json() == {"error": {"code": "bad_query", "message": message}}


def test_records_of_others_are_403(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    rid = client.post(URL, json=valid_activity(), headers=bearer(tokens["staff"])).get_json()["id"]
    assert client.get(f"/api/v1/records/{rid}", headers=bearer(tokens["staff2"])).status_code == 403
    assert client.get(f"/api/v1/records/{rid}", headers=bearer(tokens["outsider"])).status_code == 403
    assert client.get(f"/api/v1/records/{rid}", headers=bearer(tokens["manager"])).status_code == 200
    assert client.get(f"/api/v1/records/{rid}", headers=bearer(tokens["admin"])).status_code == 200


def test_patch_with_versions_and_conflict(app: Flask, tokens: dict[str, str], clock) -> None:
    client = app.test_client()
    staff = bearer(tokens["staff"])
    rid = client.post(URL, json=valid_activity(), headers=staff).get_json()["id"]
    # edit.until: workflow_started: while in review the record cannot change (409 record_locked) …
    locked = client.patch(f"/api/v1/records/{rid}", json={"budget": "15000"}, headers={**staff, "If-Match": '"1"'})
    assert locked.status_code == 409
    assert locked.get_json()["error"] | {"message": ""} == {
        "code": "record_locked", "message": "", "record_status": "in_review", "edit_until": "workflow_started"}
    assert "approval flow has started" in locked.get_json()["error"]["message"]
    # … and may again once its submitter has withdrawn it
    app.extensions["promoflow"].workflows.withdraw(rid, actor="staff", now=NOW)
    clock.now = NOW.replace(hour=3)
    ok = client.patch(f"/api/v1/records/{rid}", json={"budget": "15000"}, headers={**staff, "If-Match": '"1"'})
    assert ok.status_code == 200, ok.text
    body = ok.get_json()
    assert (body["version"], body["data"]["budget"], body["updated_at"]) == (2, "15000.00", clock.now.isoformat())
    assert ok.headers["ETag"] == '"2"'
    stale = client.patch(f"/api/v1/records/{rid}", json={"budget": "1"}, headers={**staff, "If-Match": '"1"'})
    assert stale.status_code == 409
    assert stale.get_json() == {"error": {"code": "conflict", "message": f"record {rid} changed since version 1",
                                          "current_version": 2}}
    via_query = client.patch(f"/api/v1/records/{rid}?version=1", json={"budget": "1"}, headers=staff)
    assert via_query.status_code == 409
    invalid = client.patch(f"/api/v1/records/{rid}", json={"budget": "abc"}, headers=staff)
    assert invalid.status_code == 422
    assert invalid.get_json() == {"errors": [{"field": "budget", "code": "money_type",
                                              "message": "应为金额，如 12.50"}]}
    bad_etag = client.patch(f"/api/v1/records/{rid}", json={}, headers={**staff, "If-Match": "abc"})
    assert bad_etag.status_code == 400
    # other staff may not edit; a viewer may read but not edit (edit: by submitter)
    assert client.patch(f"/api/v1/records/{rid}", json={"budget": "1"}, headers=bearer(tokens["staff2"])).status_code == 403
    assert client.patch(f"/api/v1/records/{rid}", json={"budget": "1"}, headers=bearer(tokens["manager"])).status_code == 403
    assert client.patch("/api/v1/records/424242", json={}, headers=staff).status_code == 404


def test_text_is_stored_as_typed(app: Flask, tokens: dict[str, str]) -> None:
    script = "<script>alert('x')</script> & \"quotes\" 中文"
    response = app.test_client().post(URL, json=valid_activity(name=script[:60], description=script),
                                      headers=bearer(tokens["staff"]))
    assert response.status_code == 201
    assert response.get_json()["data"]["description"] == script


def test_wrong_method_is_json_405(app: Flask, tokens: dict[str, str]) -> None:
    response = app.test_client().delete(URL, headers=bearer(tokens["staff"]))
    assert response.status_code == 405 and response.is_json
