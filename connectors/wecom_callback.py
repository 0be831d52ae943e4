"""WeCom (企业微信) callbacks for customer replies, receive only.

The official scheme (doc "加解密方案说明"), implemented in
:mod:`connectors.wecom_crypto`: the URL check is a GET with
``msg_signature, timestamp, nonce, echostr`` answered with the decrypted
``echostr``; messages are POSTed as XML whose ``<Encrypt>`` holds the AES-256-CBC
ciphertext, signed by ``msg_signature = SHA1(sort(token, timestamp, nonce,
encrypt))``; the plaintext ends with the corp id (ReceiveId), which must be
ours. XML is parsed with defusedxml only.

This type needs only the callback secrets, not the app's ``corp_secret``, so
receiving works on a machine that never sends. (``wecom_app`` connectors with
``callback_token``/``callback_aes_key`` secrets also take callbacks, through
the same crypto.)

Settings: ``corp_id`` (the ReceiveId), ``max_age`` (s, default 300: a
callback's timestamp further from now is a replay). Secrets:
``callback_token``, ``callback_aes_key`` (the 43-character EncodingAESKey).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from engine.ports import Capabilities, FeedbackItem, OutgoingMessage, SendResult

from ._base import BaseConnector
from .wecom_crypto import MAX_AGE, WecomCrypto, parse_query


class WecomCallbackConnector(BaseConnector):
    """Verifies, decrypts and parses WeCom callbacks."""

    channel = "feedback"
    required_secrets = ("callback_token", "callback_aes_key")
    required_settings = ("corp_id",)
    capabilities: ClassVar[Capabilities] = Capabilities(webhooks=True, feedback=True)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        try:
            self.crypto = WecomCrypto(self.secret("callback_token"), self.secret("callback_aes_key"),
                                      str(self.setting("corp_id")))
        except ValueError as exc:
            from engine.ports import ConfigurationError

            raise ConfigurationError(f"connector `{self.id}`: callback_aes_key: {exc}", code="bad_secret") from None

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Nothing is sent through a receive-only connector."""
        return [SendResult.permanent(m.id, "inbound_only", "this connector only receives feedback")
                for m in messages]

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> str | list[FeedbackItem]:
        """For the URL check (``echostr`` in the query) the plaintext to answer
        with; otherwise one item: ``reply`` for a text message (``text`` is the
        content; the engine decides whether it is an opt-out by its configured
        keywords), ``event`` for anything else. ``provider_id`` is ``MsgId``, or
        ``FromUserName:CreateTime`` when there is none (events), the key that
        drops WeCom's retries; ``sender`` is ``FromUserName``.

        Raises:
            WecomCryptoError: signature, timestamp, XML, ciphertext or corp id wrong.
        """
        query = query or {}
        msg_signature, timestamp, nonce = parse_query(query)
        max_age = float(self.setting("max_age", MAX_AGE))
        now = self.now_ts()
        if "echostr" in query:
            return self.crypto.verify_url(msg_signature, timestamp, nonce, str(query["echostr"]), now=now,
                                          max_age=max_age)
        fields = self.crypto.decrypt_message(msg_signature, timestamp, nonce, body, now=now, max_age=max_age)
        msg_type = fields.get("MsgType", "")
        kind = "reply" if msg_type == "text" else "event"
        provider_id = fields.get("MsgId") or f"{fields.get('FromUserName')}:{fields.get('CreateTime')}"
        return [FeedbackItem(kind, provider_id=provider_id, sender=fields.get("FromUserName"),
                             text=fields.get("Content") if kind == "reply" else None,
                             status=fields.get("Event"),
                             data={"MsgType": msg_type, "AgentID": fields.get("AgentID", ""),
                                   # Events keep every field: contact and group changes carry their ids there.
                                   **(dict(fields) if kind == "event" else {})})]
