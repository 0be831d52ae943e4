"""Helpers for the feedback tests: customers, WeCom callback requests built
with the real crypto, signed survey-webhook requests."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from connectors.survey_webhook import sign
from connectors.wecom_crypto import WecomCrypto, signature
from engine.storage.models import Consent, Customer, Order
from engine.storage.times import to_db_time

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
SECRET_KEY = "test-secret"
# the official WeCom sample's token, EncodingAESKey and corp id
WECOM_TOKEN, WECOM_AES_KEY, CORP_ID = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wx5823bf96d3bd56c7"
SURVEY_SECRET = "survey-hook-secret"
PASSWORD = "secret-pw"


class Clock:
    """A settable clock for the app and its connectors."""

    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def add_customer(session: Session, cid: int, *, now: datetime, last_order: datetime | None = None,
                 consents: dict[str, bool] | None = None, wecom: str | None = None, **extra: Any) -> None:
    stamp = to_db_time(now)
    session.add(Customer(id=cid, name=f"客户{cid}", phone=f"1380000{cid:04d}", email=f"c{cid}@example.com",
                         last_purchase_at=to_db_time(last_order) if last_order else None,
                         order_count=1 if last_order else 0, timezone="Asia/Shanghai",
                         attrs={"wecom_external_userid": wecom} if wecom else None,
                         created_at=stamp, updated_at=stamp, **extra))
    session.flush()
    if last_order is not None:
        session.add(Order(customer_id=cid, amount=100, placed_at=to_db_time(last_order), created_at=stamp))
    for channel, granted in (consents or {}).items():
        session.add(Consent(customer_id=cid, channel=channel, granted=granted, updated_at=stamp))
    session.flush()


def wecom_text_xml(sender: str, content: str, msg_id: str, create_time: int) -> str:
    return (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>1000002</AgentID></xml>")


def wecom_post(inner_xml: str, timestamp: int, nonce: str = "1372623149", *, token: str = WECOM_TOKEN,
               corp_id: str = CORP_ID) -> tuple[str, bytes]:
    """(query string, body) of a WeCom callback POST carrying ``inner_xml``,
    encrypted and signed as WeCom does."""
    encrypted = WecomCrypto(token, WECOM_AES_KEY, corp_id).encrypt(inner_xml)
    sig = signature(token, str(timestamp), nonce, encrypted)
    body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<AgentID><![CDATA[1000002]]></AgentID></xml>").encode()
    return f"msg_signature={sig}&timestamp={timestamp}&nonce={nonce}", body


def survey_hook_headers(body: bytes, timestamp: int, secret: str = SURVEY_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Promoflow-Timestamp": str(timestamp),
            "X-Promoflow-Signature": sign(secret, timestamp, body)}


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()
