"""The WeCom callback end to end: requests encrypted and signed with the real
crypto go through the Flask app to the database; a customer's "退订" opts them
out and the next run of the shipped win-back rule skips them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from connectors.wecom_crypto import WecomCrypto, signature
from engine.automation.configure import build_policy
from engine.automation.runner import run_rule
from engine.storage.database import transaction
from engine.storage.models import Consent, Event, Feedback, OutboxMessage

from .support import CORP_ID, NOW, WECOM_AES_KEY, WECOM_TOKEN, add_customer, wecom_post, wecom_text_xml

TS = int(NOW.timestamp())
URL = "/hooks/wecom/test_wecom"


def _customers(services) -> None:
    inactive = NOW - timedelta(days=100)
    with transaction(services.session_factory) as s:
        for cid in (1, 2):
            add_customer(s, cid, now=NOW, last_order=inactive, consents={"sms": True, "wecom": True},
                         wecom=f"wm_cust_{cid}")


def test_url_check_answers_the_decrypted_echostr(app) -> None:
    echostr = WecomCrypto(WECOM_TOKEN, WECOM_AES_KEY, CORP_ID).encrypt("1616140317555161061")
    sig = signature(WECOM_TOKEN, str(TS), "42", echostr)
    client = app.test_client()
    ok = client.get(URL, query_string={"msg_signature": sig, "timestamp": TS, "nonce": "42", "echostr": echostr})
    assert ok.status_code == 200 and ok.text == "1616140317555161061"
    bad = client.get(URL, query_string={"msg_signature": "0" * 40, "timestamp": TS, "nonce": "42",
                                        "echostr": echostr})
    assert bad.status_code == 401 and "1616140317555161061" not in bad.text


def test_reply_td_opts_out_and_next_rule_run_skips(app, services) -> None:
    _customers(services)
    client = app.test_client()
    query, body = wecom_post(wecom_text_xml("wm_cust_1", "退订", "10001", TS), TS)
    response = client.post(f"{URL}?{query}", data=body, content_type="text/xml")
    assert response.status_code == 200, response.text

    with services.session_factory() as s:
        consents = dict(s.execute(select(Consent.channel, Consent.granted).where(Consent.customer_id == 1)).all())
        assert consents == {"sms": False, "email": False, "wecom": False}
        assert dict(s.execute(select(Consent.channel, Consent.granted).where(Consent.customer_id == 2)).all()) == \
            {"sms": True, "wecom": True}
        fb = s.execute(select(Feedback)).scalar_one()
        assert (fb.customer_id, fb.comment, fb.source) == (1, "退订", "wecom:test_wecom")
        assert "opt_out" in fb.tags
        names = [n for (n,) in s.execute(select(Event.name).order_by(Event.id))]
        assert "feedback.received" in names and "customer.updated" in names
        updated = s.execute(select(Event.payload).where(Event.name == "customer.updated")).scalar_one()
        assert updated["reason"] == "opt_out" and updated["customer_id"] == 1

    # WeCom retries a callback it thinks went unanswered: stored once.
    again = client.post(f"{URL}?{query}", data=body, content_type="text/xml")
    assert again.status_code == 200
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 1

    definitions = services.registry.current()
    policy = build_policy(definitions, version_of=lambda rule_id: services.registry.version_of("rule", rule_id))
    report = run_rule(services.session_factory, "winback_90d", now=NOW, definitions=definitions, policy=policy)
    assert report.entered == 1
    with services.session_factory() as s:
        messaged = {c for (c,) in s.execute(select(OutboxMessage.customer_id))}
    assert messaged == {2}


def test_ordinary_reply_is_tagged_feedback_not_an_opt_out(app, services) -> None:
    _customers(services)
    query, body = wecom_post(wecom_text_xml("wm_cust_2", "快递太慢了，客服也不理人", "10002", TS), TS)
    assert app.test_client().post(f"{URL}?{query}", data=body, content_type="text/xml").status_code == 200
    with services.session_factory() as s:
        fb = s.execute(select(Feedback)).scalar_one()
        assert fb.customer_id == 2 and fb.tags == ["物流慢", "客服态度"]
        assert all(g for (g,) in s.execute(select(Consent.granted).where(Consent.customer_id == 2)))


def test_tampered_or_foreign_callbacks_store_nothing(app, services) -> None:
    _customers(services)
    client = app.test_client()
    inner = wecom_text_xml("wm_cust_1", "退订", "10003", TS)
    query, body = wecom_post(inner, TS, token="wrong-token")            # signed with another token
    assert client.post(f"{URL}?{query}", data=body, content_type="text/xml").status_code == 401
    query, body = wecom_post(inner, TS, corp_id="ww_other_corp")        # another corp's ReceiveId
    assert client.post(f"{URL}?{query}", data=body, content_type="text/xml").status_code == 401
    old = TS - 3600                                                     # replayed an hour later
    query, body = wecom_post(inner, old)
    assert client.post(f"{URL}?{query}", data=body, content_type="text/xml").status_code == 401
    assert client.post(f"{URL}?timestamp={TS}", data=b"<xml/>").status_code == 401   # no signature
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>'
    assert client.post(f"{URL}?msg_signature=x&timestamp={TS}&nonce=1", data=bomb).status_code == 401
    assert client.post("/hooks/wecom/nope?x=1", data=body).status_code == 404
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0
        assert all(g for (g,) in s.execute(select(Consent.granted)))


def test_reply_marks_message_replied(app, services) -> None:
    _customers(services)
    query, body = wecom_post(wecom_text_xml("wm_cust_2", "收到，谢谢", "10009", TS), TS)
    assert app.test_client().post(f"{URL}?{query}", data=body, content_type="text/xml").status_code == 200
    with services.session_factory() as s:
        replied = s.execute(select(Event).where(Event.name == "message.replied")).scalar_one()
        assert (replied.subject_type, replied.subject_id) == ("customer", "2")


def test_hostile_callbacks_never_500(app, services) -> None:
    client = app.test_client()
    good_query, good_body = wecom_post(wecom_text_xml("wm_x", "hi", "1", TS), TS)
    cases = [
        ("", b""), ("msg_signature=&timestamp=&nonce=", b""), ("msg_signature=x&timestamp=abc&nonce=1", good_body),
        (good_query, b"not xml"), (good_query, b"<xml><Encrypt></Encrypt></xml>"),
        (good_query, b"<xml><Encrypt>!!!notbase64</Encrypt></xml>"), (good_query, b"\xff\xfe\x00"),
        (good_query, b"<xml><Encrypt>" + b"A" * 100_000 + b"</Encrypt></xml>"),
        ("msg_signature=x&timestamp=1&nonce=1&echostr=%00%ff", b""),
    ]
    for query, body in cases:
        for method in (client.get, client.post):
            response = method(f"{URL}?{query}", data=body)
            assert response.status_code in (401, 405), (query, body[:30], response.status_code)
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Feedback)).scalar() == 0


def test_app_connector_without_callback_secrets_takes_no_callbacks(app, monkeypatch) -> None:
    query, body = wecom_post(wecom_text_xml("wm_x", "hi", "1", TS), TS)
    client = app.test_client()
    monkeypatch.delenv("WECOM_CORP_SECRET", raising=False)
    missing = client.post(f"/hooks/wecom/wecom_app?{query}", data=body)
    assert missing.status_code == 503 and "WECOM" not in missing.text     # names no variable, no secret
    monkeypatch.setenv("WECOM_CORP_SECRET", "s")
    assert client.post(f"/hooks/wecom/wecom_app?{query}", data=body).status_code == 404
    assert client.post(f"/hooks/wecom/sms_aliyun?{query}", data=body).status_code == 404


def test_app_connector_with_callback_secrets_takes_replies(app, services) -> None:
    _customers(services)
    query, body = wecom_post(wecom_text_xml("wm_cust_2", "TD", "20001", TS), TS)
    assert app.test_client().post(f"/hooks/wecom/test_app?{query}", data=body).status_code == 200
    with services.session_factory() as s:
        assert s.execute(select(Feedback.source)).scalar_one() == "wecom:test_app"
        assert not any(g for (g,) in s.execute(select(Consent.granted).where(Consent.customer_id == 2)))
