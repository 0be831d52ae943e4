"""The messages page and API: who may see them, filters and counts, detail
with attempts, resend (dead letters; unknown marketing only when confirmed),
zh/en; and the delivery-receipt callbacks (Twilio signature, Aliyun token);
both databases."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import insert, select
from web_support import NOW, bearer, csrf_from

from connectors.twilio import twilio_signature
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.database import transaction
from engine.storage.models import AuditEntry, OutboxMessage
from engine.storage.times import to_db_time


def _add(app: Flask, *rows: dict) -> list[int]:
    stamp = to_db_time(NOW)
    base = {"channel": "sms", "connector": "sms_aliyun", "body": "春季促销 20 元券", "payload": {},
            "delivery_class": "marketing", "status": "queued", "attempts": 0, "next_attempt_at": stamp,
            "created_at": stamp, "rule_id": None, "provider_id": None, "sent_at": None, "last_error": None}
    with transaction(app.extensions["promoflow"].session_factory) as s:
        s.execute(insert(OutboxMessage.__table__), [{**base, "idempotency_key": f"w-{i}",
                                                      "recipient": f"1380000{i:04d}", **r} for i, r in enumerate(rows)])
    with app.extensions["promoflow"].session_factory() as s:
        return list(s.scalars(select(OutboxMessage.id).order_by(OutboxMessage.id)))


def _row(app: Flask, message_id: int) -> OutboxMessage:
    with app.extensions["promoflow"].session_factory() as s:
        return s.get(OutboxMessage, message_id)


@pytest.fixture
def sample(app: Flask) -> list[int]:
    return _add(app,
                {"status": "sent", "rule_id": "winback_90d", "provider_id": "biz-1", "sent_at": to_db_time(NOW)},
                {"status": "dead", "rule_id": "winback_90d", "attempts": 5, "last_error": "http_503: unavailable"},
                {"status": "unknown", "rule_id": "winback_90d", "attempts": 1, "last_error": "timeout"},
                {"status": "unknown", "channel": "wecom", "connector": "wecom_app", "delivery_class": "transactional",
                 "recipient": "zhangsan", "attempts": 1},
                {"status": "sent", "channel": "email", "connector": "email_smtp", "recipient": "a@example.com",
                 "created_at": to_db_time(NOW - timedelta(days=3))})


def test_only_marketing_roles_and_admin(login, sample, tokens, app) -> None:
    assert login("staff").get("/messages").status_code == 403
    assert login("outsider").get(f"/messages/{sample[0]}").status_code == 403
    assert login("manager").get("/messages").status_code == 200
    assert app.test_client().get("/api/v1/messages", headers=bearer(tokens["staff"])).status_code == 403
    assert app.test_client().get("/api/v1/messages").status_code == 401
    assert 'class="nav-messages"' in login("manager").get("/").text
    assert 'class="nav-messages"' not in login("staff").get("/").text


def test_page_filters_counts_and_masks(login, sample) -> None:
    client = login("manager")
    page = client.get("/messages").text
    assert page.count('class="message ') == 5
    assert 'data-status="unknown"><a' in page and "138****0001" in page and "13800000001" not in page
    page = client.get("/messages?status=unknown").text
    assert page.count('class="message ') == 2
    assert '<b>2</b>' in page  # counts ignore the status filter: unknown 2, sent 2, dead 1
    assert client.get("/messages?channel=sms&rule=winback_90d").text.count('class="message ') == 3
    local_day = (NOW - timedelta(days=3)).astimezone().date().isoformat()
    assert client.get(f"/messages?from={local_day}&to={local_day}").text.count('class="message ') == 1
    assert client.get("/messages?status=bogus").status_code == 400
    english = login("manager", lang="en").get("/messages").text
    assert "Dead letter" in english and "Unknown" in english


def test_resend_dead_letter_and_confirmed_unknown(app, login, sample) -> None:
    client = login("manager")
    dead, unknown, transactional = sample[1], sample[2], sample[3]
    detail = client.get(f"/messages/{dead}")
    assert "http_503: unavailable" in detail.text and 'name="confirm_duplicate"' not in detail.text
    response = client.post(f"/messages/{dead}/resend", data={"csrf_token": csrf_from(detail.text)})
    assert response.status_code == 302 and _row(app, dead).status == "queued"
    assert client.post(f"/messages/{dead}/resend", data={}).status_code == 400  # CSRF
    # unknown marketing: the page warns and asks; without the box ticked nothing happens
    detail = client.get(f"/messages/{unknown}")
    assert 'name="confirm_duplicate"' in detail.text
    response = client.post(f"/messages/{unknown}/resend", data={"csrf_token": csrf_from(detail.text)})
    assert response.status_code == 302 and "confirm=1" in response.headers["Location"]
    assert _row(app, unknown).status == "unknown"
    client.post(f"/messages/{unknown}/resend", data={"csrf_token": csrf_from(detail.text), "confirm_duplicate": "1"})
    assert _row(app, unknown).status == "queued" and _row(app, unknown).attempts == 0
    # transactional unknown: at least once anyway, no confirmation
    detail = client.get(f"/messages/{transactional}")
    client.post(f"/messages/{transactional}/resend", data={"csrf_token": csrf_from(detail.text)})
    assert _row(app, transactional).status == "queued"
    with app.extensions["promoflow"].session_factory() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "message.resend")).all()
    assert {(a.entity_id, a.actor, a.diff["confirmed_duplicate"]) for a in audit} == {
        (str(dead), "manager", False), (str(unknown), "manager", True), (str(transactional), "manager", False)}


def test_api_list_detail_resend(app, sample, tokens) -> None:
    client, auth = app.test_client(), bearer(tokens["manager"])
    body = client.get("/api/v1/messages?status=unknown", headers=auth).get_json()
    assert body["total"] == 2 and body["counts"] == {"sent": 2, "dead": 1, "unknown": 2}
    assert {m["recipient"] for m in body["messages"]} == {"138****0002", "zh***"}
    assert client.get("/api/v1/messages?from=yesterday", headers=auth).status_code == 400
    unknown = sample[2]
    detail = client.get(f"/api/v1/messages/{unknown}", headers=auth).get_json()
    assert detail["last_error"] == "timeout" and detail["resend_needs_confirmation"] is True
    refused = client.post(f"/api/v1/messages/{unknown}/resend", headers=auth)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "needs_confirmation"
    ok = client.post(f"/api/v1/messages/{unknown}/resend", headers=auth, json={"confirm_duplicate": True})
    assert ok.status_code == 200 and _row(app, unknown).status == "queued"
    again = client.post(f"/api/v1/messages/{unknown}/resend", headers=auth, json={"confirm_duplicate": True})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "not_resendable"
    assert client.post("/api/v1/messages/999999/resend", headers=auth).status_code == 404


RECEIPT_CONNECTORS = """
- kind: connector
  id: sms_twilio
  type: twilio
  channel: sms
  settings: {from_number: "+15005550006", status_callback: "https://promo.example.com/api/v1/messages/receipts/sms_twilio"}
  secrets: {account_sid: {env: TEST_TW_SID}, auth_token: {env: TEST_TW_TOKEN}}
- kind: connector
  id: sms_ali_receipts
  type: aliyun_sms
  channel: sms
  settings: {sign_name: 促销通}
  secrets: {access_key_id: {env: TEST_ALI_ID}, access_key_secret: {env: TEST_ALI_SK}, receipt_token: {env: TEST_ALI_RT}}
"""


def test_receipt_callbacks(app, tmp_path, monkeypatch) -> None:
    for name, value in {"TEST_TW_SID": "ACx", "TEST_TW_TOKEN": "tw-token", "TEST_ALI_ID": "id",
                        "TEST_ALI_SK": "sk", "TEST_ALI_RT": "rt-secret"}.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "defs").mkdir()
    (tmp_path / "defs" / "receipts.yaml").write_text(RECEIPT_CONNECTORS, encoding="utf-8")
    publish_paths(app.extensions["promoflow"].session_factory, [*library_paths(), tmp_path / "defs"], now=NOW)
    ids = _add(app, {"connector": "sms_twilio", "status": "sent", "provider_id": "SM1", "recipient": "+14155550100"},
               {"connector": "sms_ali_receipts", "status": "unknown"},
               {"connector": "sms_ali_receipts", "status": "sent", "provider_id": "biz-7", "recipient": "13800000002"},
               {"connector": "sms_ali_receipts", "status": "sent", "provider_id": "biz-7", "recipient": "13800000003"})
    client = app.test_client()
    url = "https://promo.example.com/api/v1/messages/receipts/sms_twilio"
    form = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003", "To": "+14155550100"}
    signature = twilio_signature("tw-token", url, form)
    assert client.post("/api/v1/messages/receipts/sms_twilio", data=form,
                       headers={"X-Twilio-Signature": "forged"}).status_code == 403
    ok = client.post("/api/v1/messages/receipts/sms_twilio", data=form, headers={"X-Twilio-Signature": signature})
    assert ok.status_code == 204
    row = _row(app, ids[0])
    assert (row.delivery_status, row.delivery_code) == ("undelivered", "30003")
    report = [{"phone_number": "13800000001", "send_time": "2026-03-02 12:00:00", "report_time": "2026-03-02 12:00:04",
               "success": True, "err_code": "DELIVERED", "biz_id": "biz-6", "out_id": str(ids[1])},
              {"phone_number": "13800000003", "send_time": "2026-03-02 12:00:00",
               "report_time": "2026-03-02 12:00:04", "success": False, "err_code": "MK:0001", "biz_id": "biz-7",
               "out_id": ""}]
    path = "/api/v1/messages/receipts/sms_ali_receipts"
    assert client.post(path + "?token=wrong", json=report).status_code == 403
    answer = client.post(path + "?token=rt-secret", json=report)
    assert answer.status_code == 200 and json.loads(answer.text) == {"code": 0, "msg": "成功"}
    settled = _row(app, ids[1])
    assert (settled.status, settled.delivery_status, settled.provider_id) == ("sent", "delivered", "biz-6")
    assert _row(app, ids[2]).delivery_status is None  # same BizId, other number
    assert _row(app, ids[3]).delivery_status == "undelivered"
    assert client.post(path + "?token=rt-secret", json=report).status_code == 200  # a retried push: no change
    assert client.post("/api/v1/messages/receipts/sms_aliyun?token=x", json=[]).status_code == 503  # no keys in env
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIYUN_ACCESS_KEY_SECRET", "sk")
    assert client.post("/api/v1/messages/receipts/sms_aliyun?token=x", json=[]).status_code == 404  # no token secret
    assert client.post("/api/v1/messages/receipts/nope", json=[]).status_code == 404
