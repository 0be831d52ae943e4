"""WeCom callback crypto: the official sample vector, round trips, tampering,
and the app connector's verify_webhook (URL check, replies, 退订 opt-out)."""

from __future__ import annotations

import base64
import os

import pytest
from connector_support import make_spec

from connectors.registry import load_connector
from connectors.wecom_crypto import WecomCrypto, WecomCryptoError, signature

# the official sample (企业微信 加解密库 Sample): token, EncodingAESKey, corp id, URL-check request
TOKEN, AES_KEY, CORP_ID = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
SAMPLE = {"msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3", "timestamp": "1409659589",
          "nonce": "263014780", "echostr": ECHOSTR}


def crypto() -> WecomCrypto:
    return WecomCrypto(TOKEN, AES_KEY, CORP_ID)


def test_official_url_verification_vector() -> None:
    assert signature(TOKEN, "1409659589", "263014780", ECHOSTR) == SAMPLE["msg_signature"]
    plain = crypto().verify_url(SAMPLE["msg_signature"], "1409659589", "263014780", ECHOSTR, now=1409659589)
    assert plain == "1616140317555161061"


def test_round_trip_and_pkcs7_to_32_bytes() -> None:
    c = crypto()
    for text in ["", "a", "x" * 12, "退订", "<xml><Content>TD</Content></xml>" * 20]:
        encrypted = c.encrypt(text)
        assert len(base64.b64decode(encrypted)) % 32 == 0
        assert c.decrypt(encrypted) == text


def test_deterministic_with_fixed_random() -> None:
    c = crypto()
    assert c.encrypt("hello", random16=b"0" * 16) == c.encrypt("hello", random16=b"0" * 16)


def test_tampering_is_rejected() -> None:
    c = crypto()
    with pytest.raises(WecomCryptoError) as info:
        c.verify_url("0" * 40, "1409659589", "263014780", ECHOSTR, now=1409659589)
    assert info.value.code == "-40001"
    with pytest.raises(WecomCryptoError):  # replayed long after
        c.verify_url(SAMPLE["msg_signature"], "1409659589", "263014780", ECHOSTR, now=1409659589 + 3600)
    other_corp = WecomCrypto(TOKEN, AES_KEY, "ww-other")
    with pytest.raises(WecomCryptoError) as info:
        other_corp.decrypt(ECHOSTR)
    assert info.value.code == "-40005"
    raw = bytearray(base64.b64decode(c.encrypt("hello")))
    raw[-1] ^= 0xFF
    with pytest.raises(WecomCryptoError):
        c.decrypt(base64.b64encode(bytes(raw)).decode())
    for garbage in ("not base64!", "", base64.b64encode(b"short").decode()):
        with pytest.raises(WecomCryptoError):
            c.decrypt(garbage)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        WecomCrypto(TOKEN, "short", CORP_ID)
    with pytest.raises(ValueError):
        WecomCrypto(TOKEN, "!" * 43, CORP_ID)


def test_repr_shows_no_key() -> None:
    assert AES_KEY not in repr(crypto()) and TOKEN not in repr(crypto())


def _post(c: WecomCrypto, inner: str, timestamp: str = "1772445600", nonce: str = "n1") -> tuple[dict, bytes]:
    encrypted = c.encrypt(inner)
    query = {"msg_signature": signature(TOKEN, timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    body = f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return query, body.encode()


@pytest.fixture
def app(clock):
    spec = make_spec("wecom_app", "wecom", {"corp_id": CORP_ID, "agent_id": 1000002},
                     {"corp_secret": "S", "callback_token": "T", "callback_aes_key": "K"})
    return load_connector(spec, env={"S": "secret", "T": TOKEN, "K": AES_KEY}, clock=clock)


def test_app_connector_answers_the_url_check(app, clock) -> None:
    encrypted = crypto().encrypt("echo-123")
    ts = str(int(clock.ts()))
    query = {"msg_signature": signature(TOKEN, ts, "n", encrypted), "timestamp": ts, "nonce": "n", "echostr": encrypted}
    assert app.verify_webhook({}, b"", query) == "echo-123"


def test_a_reply_td_is_an_opt_out(app, clock) -> None:
    inner = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[lisi]]></FromUserName>"
             "<CreateTime>1772445600</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[退订]]></Content><MsgId>1234567890</MsgId><AgentID>1000002</AgentID></xml>")
    query, body = _post(crypto(), inner, timestamp=str(int(clock.ts())))
    [item] = app.verify_webhook({}, body, query)
    assert (item.kind, item.sender, item.text, item.provider_id) == ("opt_out", "lisi", "退订", "1234567890")
    query, body = _post(crypto(), inner.replace("退订", "物流太慢了"), timestamp=str(int(clock.ts())))
    assert app.verify_webhook({}, body, query)[0].kind == "reply"


def test_tampered_or_hostile_callbacks_are_rejected(app, clock) -> None:
    query, body = _post(crypto(), "<xml><MsgType>text</MsgType></xml>", timestamp=str(int(clock.ts())))
    with pytest.raises(WecomCryptoError):
        app.verify_webhook({}, body, query | {"nonce": "other"})
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><xml><Encrypt>&b;</Encrypt></xml>'
    with pytest.raises(WecomCryptoError):
        app.verify_webhook({}, bomb, query)
    with pytest.raises(WecomCryptoError):
        app.verify_webhook({}, body, {"timestamp": "1"})
    assert os.environ.get("T") is None  # secrets came from the env mapping only
