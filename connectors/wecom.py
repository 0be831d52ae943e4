"""WeCom (企业微信): application messages, group robots, external contacts.

**Token** (``gettoken``): cached until shortly before ``expires_in`` and
fetched by one thread at a time (single flight). When WeCom answers 40014 /
42001 (token invalid / expired) — or 42009 — the call refreshes the token it
used, once, under the lock, comparing with the token it saw, so twenty threads
hitting an expired token cause one ``gettoken`` request, and retries the call
once. 40001 / 40013 / 40091 on ``gettoken`` mean a wrong corp id or secret: a
:class:`ConfigurationError` that is remembered, so no further ``gettoken``
request is made by this connector instance.

**App messages** (``message/send``): ``options.msgtype`` text (default),
markdown or textcard (``title`` = options.title or subject, ``description`` =
body, ``url`` = options.url or the ``task_url`` setting formatted with the
options, e.g. ``https://promo.example.com/inbox/{task_id}``, ``btntxt``). The
body is built deterministically with ``enable_duplicate_check``, so a resend of
an ``unknown`` message inside ``duplicate_check_interval`` is dropped by WeCom.
WeCom silently drops more than 30 messages a minute (1000 an hour) to one member
from one app: those are throttled here *before* sending (``retryable``,
``code="throttled"``, ``retry_after``), as is the per-corp API rate.

**Robots** (``webhook/send?key=``): the key is the only credential (secret
``webhook_key``: the key or the whole webhook URL); ≤20 messages a minute per
robot, throttled before sending.

**External contacts** (``externalcontact/add_msg_template``): creates a mass-send
task that the staff member confirms in the WeCom client; ``accepted`` means the
task exists (provider id: its ``msgid``), not that the customer has it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from engine.ports import (
    Capabilities,
    ConfigurationError,
    FeedbackItem,
    OutgoingMessage,
    SendResult,
    UnsupportedOperation,
)

from ._base import (
    HttpConnector,
    SlidingWindowLimiter,
    TransportFailure,
    http_status_result,
    send_each,
)
from .wecom_crypto import WecomCrypto, WecomCryptoError, parse_query

BASE_URL = "https://qyapi.weixin.qq.com"
TOKEN_MARGIN = 300.0          # refresh this many seconds before expires_in
DUPLICATE_CHECK_INTERVAL = 1800
TEXT_LIMIT = 2048             # bytes: text, markdown (app), text (robot)
ROBOT_MARKDOWN_LIMIT = 4096
MEMBER_LIMITS = [(30, 60.0), (1000, 3600.0)]        # per app per member (doc 90454)
CORP_API_LIMITS = [(10000, 60.0), (150000, 3600.0)]  # per corp per API
ROBOT_LIMITS = [(20, 60.0)]
OPT_OUT_WORDS = frozenset({"TD", "T", "退订", "STOP", "UNSUBSCRIBE", "取消订阅"})

REFRESH_CODES = frozenset({40014, 42001, 42009})
#: errcode → (kind, retry_after)
CODES: Mapping[int, tuple[str, float | None]] = {
    -1: ("retryable", 1.0),         # system busy
    6000: ("retryable", 1.0),       # data version conflict
    45009: ("retryable", 60.0),     # API frequency limit
    45033: ("retryable", 1.0),      # concurrency limit
    45047: ("retryable", 60.0),     # robot: too many messages
    40001: ("config", None),        # invalid secret
    40013: ("config", None),        # invalid corp id
    40091: ("config", None),        # invalid secret
    60011: ("config", None),        # no privilege
    48002: ("config", None),        # API forbidden for this app
    60020: ("config", None),        # caller IP not in the app's trusted IPs
    93000: ("config", None),        # robot: invalid webhook key
    93004: ("config", None),        # robot: removed from the group
    301002: ("config", None),       # no privilege to the object
    40003: ("recipient", None),     # invalid userid
    40031: ("recipient", None),     # invalid userid list
    60111: ("recipient", None),     # userid not found
    81013: ("recipient", None),     # all recipients invalid
    41063: ("recipient", None),     # external contact not found / not a customer
    40096: ("recipient", None),     # invalid external userid
    40008: ("permanent", None),     # invalid msgtype
    41011: ("permanent", None),     # missing agentid
    40033: ("permanent", None),     # invalid characters
    44004: ("permanent", None),     # empty content
    45002: ("permanent", None),     # content too long
    40058: ("permanent", None),     # invalid parameter
    40063: ("permanent", None),     # empty parameter
}


def _cap_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes on a character boundary
    (WeCom cuts longer content itself, possibly mid-character)."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", "ignore") + "…"


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The same bytes for the same message, every time (duplicate check)."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


class _WecomError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"{errcode} {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg


class TokenCache:
    """Single-flight ``access_token`` cache with compare-and-swap refresh."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], now: Callable[[], float]) -> None:
        self._fetch, self._now = fetch, now
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._broken: ConfigurationError | None = None
        self.fetches = 0

    def _valid(self) -> bool:
        return self._token is not None and self._now() < self._expires_at

    def get(self) -> str:
        """A valid token, fetched if there is none.

        Raises:
            ConfigurationError: the secret was rejected (now or before).
            TransportFailure / _WecomError: the fetch failed.
        """
        if self._broken:
            raise ConfigurationError(str(self._broken), code=self._broken.code)
        token = self._token
        if token is not None and self._valid():
            return token
        return self.refresh(stale=None)

    def refresh(self, stale: str | None) -> str:
        """Replace ``stale`` (the token a call found rejected) with a new token,
        unless another thread already did."""
        with self._lock:
            if self._broken:
                raise ConfigurationError(str(self._broken), code=self._broken.code)
            if self._token is not None and self._token != stale and self._valid():
                return self._token
            self.fetches += 1
            try:
                token, expires_in = self._fetch()
            except ConfigurationError as exc:
                self._broken = exc
                raise
            self._token = token
            self._expires_at = self._now() + max(60.0, expires_in - TOKEN_MARGIN)
            return token


class _WecomTokenMixin(HttpConnector):
    """``gettoken`` with the corp id setting and the ``corp_secret`` secret."""

    default_base_url = BASE_URL

    def _init_token(self) -> None:
        self.tokens = TokenCache(self._fetch_token, self.now_ts)

    def _fetch_token(self) -> tuple[str, float]:
        response = self.request("GET", f"{self.base_url}/cgi-bin/gettoken",
                                params={"corpid": str(self.setting("corp_id")),
                                        "corpsecret": self.secret("corp_secret")})
        answer = self.json_body(response)
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode == 0 and answer.get("access_token"):
            return str(answer["access_token"]), float(answer.get("expires_in") or 7200)
        if CODES.get(errcode, ("",))[0] == "config":
            raise ConfigurationError(f"connector `{self.id}`: WeCom gettoken refused corp id/secret: "
                                     f"{errcode} {str(answer.get('errmsg', ''))[:120]}", code=str(errcode))
        raise _WecomError(errcode, str(answer.get("errmsg", ""))[:200])

    def _call(self, path: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """POST ``body`` with a token; refresh and retry once on 40014/42001/42009.

        Raises:
            ConfigurationError, TransportFailure, _WecomError (token fetch failed).
        """
        data = canonical_json(body)
        token = self.tokens.get()
        for attempt in (1, 2):
            response = self.request("POST", f"{self.base_url}{path}", params={"access_token": token}, data=data,
                                    headers={"Content-Type": "application/json; charset=utf-8"})
            try:
                answer = self.json_body(response)
            except TransportFailure:
                status = http_status_result("", response)
                if status is not None:
                    raise TransportFailure(status.code or "http", status.detail or "",
                                           sent=status.outcome == "unknown") from None
                raise
            if int(answer.get("errcode", 0) or 0) in REFRESH_CODES and attempt == 1:
                token = self.tokens.refresh(stale=token)
                continue
            return answer
        raise AssertionError("unreachable")


def _errcode_result(connector_id: str, message_id: str, errcode: int, errmsg: str) -> SendResult:
    kind, retry_after = CODES.get(errcode, ("permanent", None))
    text = errmsg[:200]
    if kind == "config":
        raise ConfigurationError(f"connector `{connector_id}`: WeCom refused: {errcode} {text}", code=str(errcode))
    if kind == "retryable":
        return SendResult.retryable(message_id, str(errcode), text, retry_after)
    if errcode in REFRESH_CODES:
        return SendResult.retryable(message_id, str(errcode), "token rejected after a refresh", 5.0)
    return SendResult.permanent(message_id, str(errcode), text)




class WecomAppConnector(_WecomTokenMixin):
    """Self-built app messages to staff (``message/send``).

    Settings: ``corp_id``, ``agent_id``, ``task_url`` (optional URL template for
    textcards), ``duplicate_check_interval`` (s, default 1800). Secrets:
    ``corp_secret``; for inbound callbacks also ``callback_token`` and
    ``callback_aes_key`` (the EncodingAESKey).
    """

    channel = "wecom"
    required_secrets = ("corp_secret",)
    required_settings = ("corp_id", "agent_id")
    capabilities: ClassVar[Capabilities] = Capabilities(
        max_batch=50, dedupe_window=DUPLICATE_CHECK_INTERVAL, webhooks=True, per_recipient_per_minute=30)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_token()
        per_minute = getattr(self.spec, "per_recipient_per_minute", None)
        member_limits = list(MEMBER_LIMITS)
        if per_minute and per_minute < 30:
            member_limits.append((max(1, int(per_minute)), 60.0))
        self.member_limiter = SlidingWindowLimiter(member_limits)
        self.api_limiter = SlidingWindowLimiter(CORP_API_LIMITS)

    def build_body(self, message: OutgoingMessage) -> dict[str, Any] | SendResult:
        """The ``message/send`` JSON for ``message`` or a permanent result."""
        msgtype = str(message.options.get("msgtype") or "text")
        body: dict[str, Any] = {
            "touser": message.recipient, "msgtype": msgtype, "agentid": int(self.setting("agent_id")),
            "safe": 0, "enable_duplicate_check": 1,
            "duplicate_check_interval": int(self.setting("duplicate_check_interval", DUPLICATE_CHECK_INTERVAL)),
        }
        if msgtype in ("text", "markdown"):
            body[msgtype] = {"content": _cap_bytes(message.body, TEXT_LIMIT)}
        elif msgtype == "textcard":
            url = message.options.get("url")
            if not url and self.setting("task_url"):
                try:
                    url = str(self.setting("task_url")).format(**message.options)
                except (KeyError, IndexError, ValueError):
                    url = None
            if not url:
                return SendResult.permanent(message.id, "missing_url", "a textcard needs options.url or task_url")
            body["textcard"] = {
                "title": _cap_bytes(str(message.options.get("title") or message.subject or ""), 128),
                "description": _cap_bytes(message.body, 512),
                "url": str(url),
                "btntxt": str(message.options.get("btntxt") or "详情"),
            }
        else:
            return SendResult.permanent(message.id, "40008", f"msgtype {msgtype!r} is not supported")
        return body

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One ``message/send`` per message (each has its own recipients).

        Raises:
            ConfigurationError: wrong corp id/secret, no privilege, IP not
                trusted (``results``: messages settled before).
        """
        return send_each(messages, self._send)

    def _throttle(self, message: OutgoingMessage) -> SendResult | None:
        now = self.now_ts()
        users = [u for u in message.recipient.split("|") if u]
        if not users:
            return SendResult.permanent(message.id, "40031", "no recipient")
        taken: list[str] = []
        agent = self.setting("agent_id")
        for user in users if "@all" not in users else []:
            wait = self.member_limiter.acquire(f"{agent}:{user}", now)
            if wait:
                for key in taken:
                    self.member_limiter.release(key, now)
                return SendResult.retryable(message.id, "throttled",
                                            "WeCom drops more than 30 messages a minute to one member", wait)
            taken.append(f"{agent}:{user}")
        wait = self.api_limiter.acquire(str(self.setting("corp_id")), now)
        if wait:
            for key in taken:
                self.member_limiter.release(key, now)
            return SendResult.retryable(message.id, "throttled", "corp API rate", wait)
        return None

    def _send(self, message: OutgoingMessage) -> SendResult:
        body = self.build_body(message)
        if isinstance(body, SendResult):
            return body
        throttled = self._throttle(message)
        if throttled is not None:
            return throttled
        try:
            answer = self._call("/cgi-bin/message/send", body)
        except TransportFailure as failure:
            return failure.result_for(message.id)
        except _WecomError as exc:  # gettoken failed: nothing was sent
            return _errcode_result(self.id, message.id, exc.errcode, exc.errmsg)
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode != 0:
            return _errcode_result(self.id, message.id, errcode, str(answer.get("errmsg", "")))
        invalid = {u.lower() for u in str(answer.get("invaliduser") or "").split("|") if u}
        invalid |= {u.lower() for u in str(answer.get("unlicenseduser") or "").split("|") if u}
        wanted = [u for u in message.recipient.split("|") if u]
        refused = [u for u in wanted if u.lower() in invalid]
        if refused and len(refused) == len(wanted):
            return SendResult.permanent(message.id, "invaliduser", "recipient is not a valid member of the app")
        detail = f"not delivered to {len(refused)} invalid recipient(s)" if refused else None
        return SendResult.accepted(message.id, str(answer.get("msgid") or "") or None, "0", detail)

    # ------------------------------------------------------------ callbacks

    def crypto(self) -> WecomCrypto:
        """The callback crypto for this app.

        Raises:
            UnsupportedOperation: ``callback_token``/``callback_aes_key`` secrets
                are not configured.
        """
        if "callback_token" not in self._secrets or "callback_aes_key" not in self._secrets:
            raise UnsupportedOperation(f"connector `{self.id}` has no callback_token/callback_aes_key secrets")
        return WecomCrypto(self.secret("callback_token"), self.secret("callback_aes_key"),
                           str(self.setting("corp_id")))

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> str | list[FeedbackItem]:
        """A WeCom callback: for the URL check (``echostr`` in the query) the
        plaintext to answer with; otherwise one :class:`FeedbackItem` —
        ``opt_out`` for a text reply that is an opt-out word (TD, 退订, STOP …),
        ``reply`` for other text, ``event`` for events. ``data`` has the
        decrypted fields; ``provider_id`` is ``MsgId`` (or
        ``FromUserName:CreateTime`` for events), the key to drop WeCom's retries.

        Raises:
            WecomCryptoError: signature, timestamp, ciphertext or corp id wrong.
            UnsupportedOperation: no callback secrets.
        """
        crypto = self.crypto()
        query = query or {}
        msg_signature, timestamp, nonce = parse_query(query)
        now = self.now_ts()
        if "echostr" in query:
            return crypto.verify_url(msg_signature, timestamp, nonce, str(query["echostr"]), now=now)
        fields = crypto.decrypt_message(msg_signature, timestamp, nonce, body, now=now)
        kind = "event" if fields.get("MsgType") == "event" else "reply"
        text = fields.get("Content")
        if kind == "reply" and text is not None and text.strip().upper() in OPT_OUT_WORDS:
            kind = "opt_out"
        provider_id = fields.get("MsgId") or f"{fields.get('FromUserName')}:{fields.get('CreateTime')}"
        return [FeedbackItem(kind, provider_id=provider_id, sender=fields.get("FromUserName"), text=text,
                             status=fields.get("Event"), data=fields)]


class WecomExternalConnector(_WecomTokenMixin):
    """Customer contact (客户联系) mass-send tasks: ``add_msg_template``.

    ``recipient``: the customer's ``external_userid``. ``options.sender`` (or the
    ``sender`` setting): the staff userid who confirms and sends. Settings:
    ``corp_id``. Secrets: ``corp_secret`` (the customer-contact secret).
    """

    channel = "wecom"
    required_secrets = ("corp_secret",)
    required_settings = ("corp_id",)
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=50)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_token()
        per_minute = getattr(self.spec, "per_recipient_per_minute", None)
        self.customer_limiter = SlidingWindowLimiter([(max(1, int(per_minute)), 60.0)] if per_minute else [])

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One task per message.

        Raises:
            ConfigurationError: secret or privileges rejected.
        """
        return send_each(messages, self._send)

    def _send(self, message: OutgoingMessage) -> SendResult:
        sender = message.options.get("sender") or self.setting("sender")
        body: dict[str, Any] = {"chat_type": "single", "external_userid": [message.recipient],
                                "text": {"content": _cap_bytes(message.body, 4000)}}
        if sender:
            body["sender"] = str(sender)
        wait = self.customer_limiter.acquire(message.recipient, self.now_ts())
        if wait:
            return SendResult.retryable(message.id, "throttled", "per-customer limit", wait)
        try:
            answer = self._call("/cgi-bin/externalcontact/add_msg_template", body)
        except TransportFailure as failure:
            return failure.result_for(message.id)
        except _WecomError as exc:
            return _errcode_result(self.id, message.id, exc.errcode, exc.errmsg)
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode != 0:
            return _errcode_result(self.id, message.id, errcode, str(answer.get("errmsg", "")))
        if message.recipient in [str(x) for x in answer.get("fail_list") or []]:
            return SendResult.permanent(message.id, "fail_list", "customer cannot receive from this sender")
        return SendResult.accepted(message.id, str(answer.get("msgid") or "") or None, "0", "task created")


class WecomRobotConnector(HttpConnector):
    """Group robot webhook. ``options.msgtype``: text (default) or markdown;
    ``options.mentioned_list`` (userids, ``@all``) for text."""

    channel = "wecom"
    required_secrets = ("webhook_key",)
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=20)
    default_base_url = BASE_URL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limiter = SlidingWindowLimiter(ROBOT_LIMITS)
        self._robot = hashlib.sha256(self.secret("webhook_key").encode()).hexdigest()[:12]

    def _url_and_params(self) -> tuple[str, dict[str, str]]:
        key = self.secret("webhook_key")
        if key.startswith(("http://", "https://")):
            return key, {}
        return f"{self.base_url}/cgi-bin/webhook/send", {"key": key}

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One post per message, at most 20 a minute per robot.

        Raises:
            ConfigurationError: the key is invalid or the robot was removed.
        """
        return send_each(messages, self._send)

    def _send(self, message: OutgoingMessage) -> SendResult:
        msgtype = str(message.options.get("msgtype") or "text")
        if msgtype == "markdown":
            body: dict[str, Any] = {"msgtype": "markdown",
                                    "markdown": {"content": _cap_bytes(message.body, ROBOT_MARKDOWN_LIMIT)}}
        elif msgtype == "text":
            text: dict[str, Any] = {"content": _cap_bytes(message.body, TEXT_LIMIT)}
            mentioned = message.options.get("mentioned_list")
            if mentioned:
                text["mentioned_list"] = list(mentioned)
            body = {"msgtype": "text", "text": text}
        else:
            return SendResult.permanent(message.id, "40008", f"msgtype {msgtype!r} is not supported")
        wait = self.limiter.acquire(self._robot, self.now_ts())
        if wait:
            return SendResult.retryable(message.id, "throttled", "a robot takes 20 messages a minute", wait)
        url, params = self._url_and_params()
        try:
            response = self.request("POST", url, params=params, data=canonical_json(body),
                                    headers={"Content-Type": "application/json; charset=utf-8"})
        except TransportFailure as failure:
            return failure.result_for(message.id)
        try:
            answer = self.json_body(response)
        except TransportFailure as failure:
            return http_status_result(message.id, response) or failure.result_for(message.id)
        errcode = int(answer.get("errcode", 0) or 0)
        if errcode != 0:
            return _errcode_result(self.id, message.id, errcode, str(answer.get("errmsg", "")))
        return SendResult.accepted(message.id, None, "0")


__all__ = ["TokenCache", "WecomAppConnector", "WecomCryptoError", "WecomExternalConnector",
           "WecomRobotConnector", "canonical_json"]
