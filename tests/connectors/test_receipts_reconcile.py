"""Delivery receipts and the reconcile of ``unknown`` sends, against the fake
providers answering the documented status queries (Aliyun QuerySendDetails,
Tencent PullSmsSendStatus, Twilio's Messages list) and through the dispatcher
on both databases."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
from connector_support import make_spec
from sqlalchemy import select

from connectors.registry import load_connector
from engine.dispatch import Dispatcher, apply_receipts
from engine.ports import FeedbackItem, Outcome, OutgoingMessage, UnsupportedOperation, WebhookVerificationError
from engine.storage import dispatch_repo, outbox_repo
from engine.storage.database import transaction
from engine.storage.models import OutboxMessage
from engine.storage.times import to_db_time

ALIYUN_ENV = {"ALIYUN_AK": "test-key-id", "ALIYUN_SK": "test-key-secret", "RECEIPT": "r-token-123"}
TENCENT_ENV = {"TC_ID": "AKIDtest", "TC_KEY": "tencent-test-key", "RECEIPT": "r-token-123"}
TWILIO_ENV = {"TW_SID": "ACtest0000000000000000000000000000", "TW_TOKEN": "twilio-test-token"}


def aliyun(fake, clock, session, **extra_secrets):
    spec = make_spec("aliyun_sms", "sms", {"base_url": fake.url, "sign_name": "促销通", "read_timeout": 0.3},
                     {"access_key_id": "ALIYUN_AK", "access_key_secret": "ALIYUN_SK", **extra_secrets})
    return load_connector(spec, env=ALIYUN_ENV, session=session, clock=clock)


def tencent(fake, clock, session, **extra_secrets):
    spec = make_spec("tencent_sms", "sms", {"base_url": fake.url, "sdk_app_id": "1400000001", "sign_name": "促销通",
                                             "read_timeout": 0.3},
                     {"secret_id": "TC_ID", "secret_key": "TC_KEY", **extra_secrets})
    return load_connector(spec, env=TENCENT_ENV, session=session, clock=clock)


def twilio(fake, clock, session):
    spec = make_spec("twilio", "sms", {"base_url": fake.url, "from_number": "+15005550006", "read_timeout": 0.3},
                     {"account_sid": "TW_SID", "auth_token": "TW_TOKEN"})
    return load_connector(spec, env=TWILIO_ENV, session=session, clock=clock)


def sms(i, phone, template="SMS_100", **kw):
    kw.setdefault("params", {"code": "1234"})
    return OutgoingMessage(id=str(i), channel="sms", recipient=phone, template_code=template, **kw)


# ------------------------------------------------------------ connectors

def test_aliyun_timeout_then_query_send_details_finds_it_by_out_id(fake_aliyun, clock, session):
    c = aliyun(fake_aliyun, clock, session)
    fake_aliyun.delay = 0.6
    fake_aliyun.inject("timeout")
    [result] = c.send_batch([sms(1, "13800000001")])
    assert result.outcome is Outcome.UNKNOWN and len(fake_aliyun.delivered) == 1
    fake_aliyun.undelivered.add("13800000002")
    fake_aliyun.inject("reset_before")
    [lost] = c.send_batch([sms(2, "13800000002")])  # dropped before the provider handled it
    assert lost.outcome is Outcome.UNKNOWN  # … which the client cannot tell
    items = c.reconcile([(sms(1, "13800000001"), clock()), (sms(2, "13800000002"), clock())])
    assert [(i.message_id, i.status) for i in items] == [("1", "delivered")]
    query = fake_aliyun.queries[0]
    assert (query["PhoneNumber"], query["SendDate"]) == ("13800000001", "20260302")  # China date


def test_aliyun_batch_has_no_out_id_matched_by_template_and_time(fake_aliyun, clock, session):
    c = aliyun(fake_aliyun, clock, session)
    fake_aliyun.delay = 0.6
    fake_aliyun.undelivered.add("13800000002")
    fake_aliyun.inject("timeout")
    batch = [sms(10, "13800000001"), sms(11, "13800000002")]
    assert {r.outcome for r in c.send_batch(batch)} == {Outcome.UNKNOWN}
    clock.advance(120)
    items = c.reconcile([(m, clock() - timedelta(seconds=120)) for m in batch])
    assert [(i.message_id, i.status) for i in items] == [("10", "delivered"), ("11", "undelivered")]
    # an attempt made long after the provider's record is not matched to it
    assert c.reconcile([(batch[0], clock() + timedelta(minutes=5))]) == []


def test_aliyun_sms_report_push_needs_the_token(fake_aliyun, clock, session):
    body = json.dumps([{"phone_number": "13800000001", "send_time": "2026-03-02 18:00:00",
                        "report_time": "2026-03-02 18:00:05", "success": True, "err_code": "DELIVERED",
                        "err_msg": "用户接收成功", "sms_size": "1", "biz_id": "biz-9", "out_id": "42"}]).encode()
    with pytest.raises(UnsupportedOperation):
        aliyun(fake_aliyun, clock, session).verify_webhook({}, body, {"token": "r-token-123"})
    c = aliyun(fake_aliyun, clock, session, receipt_token="RECEIPT")
    with pytest.raises(WebhookVerificationError):
        c.verify_webhook({}, body, {"token": "guess"})
    with pytest.raises(WebhookVerificationError):
        c.verify_webhook({}, b"<xml/>", {"token": "r-token-123"})
    [item] = c.verify_webhook({}, body, {"token": "r-token-123"})
    assert (item.message_id, item.provider_id, item.status, item.data["code"]) == ("42", "biz-9", "delivered",
                                                                                   "DELIVERED")
    assert item.occurred_at.isoformat() == "2026-03-02T10:00:05+00:00"


def test_tencent_pull_matches_session_context_and_hands_out_reports_once(fake_tencent, clock, session):
    c = tencent(fake_tencent, clock, session)
    fake_tencent.delay = 0.6
    fake_tencent.undelivered.add("+8613800000002")
    fake_tencent.inject("timeout")
    batch = [sms(20, "13800000001", "1002", params={}), sms(21, "13800000002", "1002", params={})]
    assert {r.outcome for r in c.send_batch(batch)} == {Outcome.UNKNOWN}
    [ok] = c.send_batch([sms(22, "13800000003", "1002", params={})])
    items = c.reconcile([(m, clock()) for m in batch])
    assert [(i.message_id, i.status) for i in items] == [("20", "delivered"), ("21", "undelivered"),
                                                        (None, "delivered")]
    assert items[2].provider_id == ok.provider_id  # a report of a sent message: applied by SerialNo
    assert c.reconcile([(m, clock()) for m in batch]) == []


def test_tencent_status_callback(fake_tencent, clock, session):
    c = tencent(fake_tencent, clock, session, receipt_token="RECEIPT")
    body = json.dumps([{"user_receive_time": "2026-03-02 18:00:04", "nationcode": "86", "mobile": "13800000001",
                        "report_status": "FAIL", "errmsg": "MK:0005", "description": "用户短信接收失败",
                        "sid": "serial-7"}]).encode()
    [item] = c.verify_webhook({}, body, {"token": "r-token-123"})
    assert (item.provider_id, item.status, item.sender, item.data["code"]) == ("serial-7", "undelivered",
                                                                               "+8613800000001", "MK:0005")
    with pytest.raises(WebhookVerificationError):
        c.verify_webhook({}, body, {})


def test_twilio_lists_messages_by_to_and_date_sent(fake_twilio, clock, session):
    c = twilio(fake_twilio, clock, session)
    fake_twilio.delay = 0.6
    fake_twilio.inject("timeout")
    message = OutgoingMessage(id="30", channel="sms", recipient="+14155550100", body="Spring sale: 20% off")
    [result] = c.send_batch([message])
    assert result.outcome is Outcome.UNKNOWN
    other = OutgoingMessage(id="31", channel="sms", recipient="+14155550100", body="another text")
    assert c.send_batch([other])[0].outcome is Outcome.ACCEPTED
    [item] = c.reconcile([(message, clock())])
    assert (item.message_id, item.provider_id, item.status) == ("30", fake_twilio.delivered[0]["sid"], "delivered")
    assert c.reconcile([(OutgoingMessage(id="32", channel="sms", recipient="+14155550199", body="x"), clock())]) == []


# ------------------------------------------------------------ through the dispatcher

def _rows(session_factory, n, phone=lambda i: f"138{i:08d}"):
    stamp = to_db_time(NOW_AT[0])
    with transaction(session_factory) as s:
        outbox_repo.insert_messages(s, [{
            "channel": "sms", "connector": "ali", "recipient": phone(i), "body": "",
            "payload": {"template_code": "SMS_100", "params": {"code": "1"}}, "idempotency_key": f"rc-{i}",
            "delivery_class": "marketing", "status": "queued", "attempts": 0, "next_attempt_at": stamp,
            "created_at": stamp} for i in range(n)], returning=False)


NOW_AT: list = [None]


def _read(session_factory):
    with session_factory() as s:
        return [dict(r._mapping) for r in s.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id))]


def test_unknown_marketing_settled_by_reconcile_never_resent(session_factory, fake_aliyun, clock, session):
    NOW_AT[0] = clock()
    c = aliyun(fake_aliyun, clock, session)
    fake_aliyun.delay = 0.6
    fake_aliyun.undelivered.add("13800000001")
    _rows(session_factory, 3)
    d = Dispatcher(session_factory, {"ali": c}, worker_id="w", rng=random.Random(1))
    fake_aliyun.inject("timeout")
    report = d.run_until_idle(clock())
    assert report.unknown == 3 and len(fake_aliyun.delivered) == 3
    # too fresh to ask yet
    assert d.reconcile(clock()).checked == 0
    clock.advance(180)
    got = d.reconcile(clock())
    assert (got.checked, got.settled, got.unresolved) == (3, 3, 0)
    rows = _read(session_factory)
    assert [r["status"] for r in rows] == ["sent"] * 3
    assert [r["delivery_status"] for r in rows] == ["delivered", "undelivered", "delivered"]
    assert len(fake_aliyun.delivered) == 3  # nothing was sent again
    assert d.run_until_idle(clock()).claimed == 0
    # a late receipt push for the same message changes nothing twice, and never moves back
    item = FeedbackItem("receipt", message_id=str(rows[0]["id"]), status="pending")
    assert apply_receipts(session_factory, "ali", [item], clock()) == 1
    assert apply_receipts(session_factory, "ali", [item], clock()) == 0
    assert _read(session_factory)[0]["delivery_status"] == "delivered"


def test_unknown_that_never_arrived_stays_visible_for_a_person(session_factory, fake_aliyun, clock, session):
    NOW_AT[0] = clock()
    c = aliyun(fake_aliyun, clock, session)
    _rows(session_factory, 1)
    d = Dispatcher(session_factory, {"ali": c}, worker_id="w", rng=random.Random(1))
    fake_aliyun.inject("reset_before")  # the connection drops before the provider handled the request
    d.run_until_idle(clock())
    [row] = _read(session_factory)
    assert row["status"] == "unknown" and not fake_aliyun.delivered
    for _ in range(3):
        clock.advance(700)
        d.reconcile(clock(), max_checks=3)
    [row] = _read(session_factory)
    assert row["status"] == "unknown" and row["reconcile_checks"] == 3
    assert "a person must decide" in row["last_error"]
    clock.advance(700)
    assert d.reconcile(clock(), max_checks=3).checked == 0  # no more lookups
    assert d.resend(row["id"], clock()) == "needs_confirmation"
    assert d.resend(row["id"], clock(), confirm_duplicate=True) == "queued"
    d.run_until_idle(clock())
    [row] = _read(session_factory)
    assert row["status"] == "sent" and len(fake_aliyun.delivered) == 1
    with session_factory() as s:
        history = dispatch_repo.attempts_of(s, row["id"])
    assert [h["outcome"] for h in history] == ["unknown", "sent"]
