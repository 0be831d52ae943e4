"""``POST/GET/PATCH /api/v1/customers``: upsert by identity, batch with a
result per item, roles, conflicts; both databases."""

from __future__ import annotations

from sqlalchemy import select

from engine.storage.models import Consent, Event

from .conftest import NOW


def test_upsert_creates_then_updates_by_any_identity(api, app) -> None:
    first = api("POST", "/customers", json={
        "phone": "+86 138-0000-0001", "name": "张三", "member_no": "M001", "tags": ["vip"],
        "consent": {"sms": {"granted": True, "source": "pos"}, "email": True}})
    assert first.status_code == 201, first.get_json()
    body = first.get_json()
    cid = body["id"]
    assert (body["status"], body["phone"], body["member_no"], body["tags"]) == ("created", "13800000001", "M001", ["vip"])
    assert body["consent"]["sms"]["source"] == "pos" and body["consent"]["email"] == {**body["consent"]["email"], "granted": True, "source": "api:pos"}
    assert body["registered_at"] == NOW.replace(tzinfo=None).isoformat() + "Z"
    assert first.headers["Location"].endswith(f"/api/v1/customers/{cid}")

    # The member number finds the same customer; given values replace, absent ones stay.
    again = api("POST", "/customers", json={"member_no": "M001", "email": "Zhang@Example.com", "city": "上海"})
    assert again.status_code == 200 and again.get_json()["id"] == cid
    got = api("GET", f"/customers/{cid}").get_json()
    assert (got["name"], got["email"], got["city"], got["phone"]) == ("张三", "zhang@example.com", "上海", "13800000001")
    # One customer, one customer.registered event.
    sf = app.extensions["promoflow"].session_factory
    with sf() as s:
        events = s.execute(select(Event.name, Event.subject_id).where(Event.name == "customer.registered")).all()
    assert events == [("customer.registered", str(cid))]


def test_patch_clears_sets_and_refuses_someone_elses_phone(api) -> None:
    a = api("POST", "/customers", json={"phone": "13800000011", "name": "甲", "city": "北京", "tags": ["x"]}).get_json()
    b = api("POST", "/customers", json={"phone": "13800000012", "name": "乙"}).get_json()
    changed = api("PATCH", f"/customers/{a['id']}", json={"city": None, "level": "gold", "remove_tags": ["x"],
                                                          "tags": ["y"], "wecom_userid": "wmABC"})
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert (body["city"], body["level"], body["tags"], body["wecom_userids"]) == (None, "gold", ["y"], ["wmABC"])
    taken = api("PATCH", f"/customers/{a['id']}", json={"phone": "13800000012"})
    assert taken.status_code == 409
    assert taken.get_json()["errors"][0]["code"] == "identity_conflict" and str(b["id"]) in taken.get_json()["errors"][0]["message"]
    assert api("PATCH", "/customers/999999", json={"city": "x"}).status_code == 404
    assert api("GET", "/customers/999999").status_code == 404


def test_bad_payloads_are_422_with_field_errors(api) -> None:
    response = api("POST", "/customers", json={"phone": "12", "nmae": "x", "birthday": "1990-02-30",
                                               "consent": {"smss": True}})
    assert response.status_code == 422
    errors = {e["field"]: e for e in response.get_json()["errors"]}
    assert errors["phone"]["code"] == "invalid"
    assert "did you mean `name`" in errors["nmae"]["message"]
    assert errors["birthday"]["code"] == "invalid"
    assert "did you mean `sms`" in errors["consent.smss"]["message"]
    assert api("POST", "/customers", json={"name": "无名"}).get_json()["errors"][0]["code"] == "required"
    assert api("POST", "/customers", data="[", content_type="application/json").status_code == 400


def test_batch_result_per_item_and_limit(api, app) -> None:
    items = [{"external_id": f"E{i}", "name": f"客户{i}"} for i in range(5)]
    items.insert(2, {"external_id": "BAD", "phone": "not a phone"})
    items.append({"external_id": "E1", "city": "杭州"})  # the same customer again in one batch
    response = api("POST", "/customers", json={"items": items})
    assert response.status_code == 200
    body = response.get_json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["created", "created", "error", "created", "created", "created", "updated"]
    assert body["results"][2]["errors"][0]["field"] == "phone"
    assert body["results"][6]["id"] == body["results"][1]["id"]
    assert body["counts"] == {"created": 5, "error": 1, "updated": 1}
    assert api("GET", f"/customers/{body['results'][1]['id']}").get_json()["city"] == "杭州"

    too_many = api("POST", "/customers", json={"items": [{"phone": "13800000000"}] * 1001})
    assert too_many.status_code == 413
    assert too_many.get_json()["error"]["code"] == "batch_too_large"


def test_roles(api) -> None:
    body = {"phone": "13800000099"}
    assert api("POST", "/customers", json=body, as_="staff").status_code == 403
    assert api("POST", "/customers", json=body, as_="mkt").status_code == 403
    assert api("POST", "/customers", json=body, as_="admin").status_code == 201
    assert api("POST", "/events", json={}, as_="staff").status_code == 403


def test_consent_change_keeps_source(api, app) -> None:
    cid = api("POST", "/customers", json={"email": "a@example.com", "consent": {"email": True}}).get_json()["id"]
    api("PATCH", f"/customers/{cid}", json={"consent": {"email": {"granted": False, "source": "call_center"}}})
    with app.extensions["promoflow"].session_factory() as s:
        row = s.scalars(select(Consent).where(Consent.customer_id == cid)).one()
    assert (row.granted, row.source) == (False, "call_center")


def test_hostile_text_is_a_field_error_not_a_crash(api) -> None:
    body = '{"phone": "13800000077", "name": "a\\u0000b", "attrs": {"k": "\\ud800"}, "tags": ["x\\udfff"]}'
    response = api("POST", "/customers", data=body, content_type="application/json")
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} == {"name", "attrs.k", "tags[0]"}
    event = '{"name": "custom.x", "customer_id": 1, "idempotency_key": "k\\u0000", "data": {"\\ud800": 1}}'
    response = api("POST", "/events", data=event, content_type="application/json")
    assert response.status_code == 422
    assert {e["code"] for e in response.get_json()["errors"]} == {"invalid_text"}
    assert api("GET", "/customers/99999999999999999999").status_code == 404


def test_ids_out_of_range_are_not_found(api) -> None:
    huge = 2**70
    assert api("PATCH", f"/customers/{huge}", json={"city": "x"}).status_code == 404
    assert api("POST", f"/customers/{huge}/merge", json={"from": 1}).status_code == 404
    cid = api("POST", "/customers", json={"phone": "13800000078"}).get_json()["id"]
    assert api("POST", f"/customers/{cid}/merge", json={"from": huge}).status_code == 422
    event = {"name": "custom.x", "customer_id": huge, "idempotency_key": "big"}
    assert api("POST", "/events", json=event).get_json()["errors"][0]["field"] == "customer_id"
