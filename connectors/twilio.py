"""Twilio Programmable Messaging (international SMS).

``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP Basic auth
(AccountSid, AuthToken), form-encoded ``To`` (E.164), ``From`` or
``MessagingServiceSid``, ``Body``, optional ``StatusCallback``. One request per
message (Twilio has no batch send). The answer's ``sid`` is the provider id.

Status callbacks (``verify_webhook``) are authenticated by ``X-Twilio-Signature``
= Base64(HMAC-SHA1(AuthToken, URL + the POST parameters sorted by name, each
name followed by its value)). As in Twilio's own validators (twilio-python
``RequestValidator``): a name that appears several times contributes once per
distinct value, values in sorted order; and the signature is checked over the
URL both with and without the scheme's default port (``:443``/``:80``), because
Twilio signs whichever form it called.

**Reconcile**: Twilio has no idempotency key, so a send that timed out is
looked up in the Messages list filtered by ``To`` and ``DateSent`` (the UTC
date): the message with our exact body created no earlier than a minute before
the attempt is ours.

Settings: ``from_number`` or ``messaging_service_sid``, ``status_callback``
(the public URL Twilio posts receipts to), ``base_url`` (default
``https://api.twilio.com``), timeouts. Secrets: ``account_sid``, ``auth_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from engine.ports import (
    Capabilities,
    ConfigurationError,
    ConnectorError,
    FeedbackItem,
    OutgoingMessage,
    SendResult,
    WebhookVerificationError,
)

from ._base import (
    HttpConnector,
    TransportFailure,
    http_status_result,
    retry_after_seconds,
    send_each,
)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")

#: Twilio message status → our delivery status ("Outbound Message Status").
STATUSES: Mapping[str, str] = {
    "accepted": "pending", "scheduled": "pending", "queued": "pending", "sending": "pending", "sent": "pending",
    "delivered": "delivered", "read": "delivered", "undelivered": "undelivered", "failed": "failed",
    "canceled": "failed",
}

#: Twilio error code → (kind, suppress)
CODES: Mapping[int, tuple[str, bool]] = {
    20429: ("retryable", False),     # too many requests: never processed, safe to retry
    20003: ("config", False),        # authentication failed
    20404: ("config", False),        # account/resource not found
    20005: ("config", False),        # account not active
    21606: ("config", False),        # From is not a valid, SMS-capable number of this account
    21659: ("config", False),        # From is not a Twilio number
    21212: ("config", False),        # invalid From number
    21603: ("config", False),        # From missing
    21211: ("permanent", False),     # invalid To
    21612: ("permanent", False),     # To not reachable from this From
    21614: ("permanent", False),     # To is not a mobile number
    21408: ("permanent", False),     # region not enabled for this account
    21610: ("permanent", True),      # recipient replied STOP: unsubscribed
    21617: ("permanent", False),     # body too long
    21602: ("permanent", False),     # body missing
    30007: ("permanent", False),     # carrier filtered
    30003: ("permanent", False),     # unreachable handset
}


#: what a POST body's parameters may be given as: a mapping (a value may be a
#: list of values) or (name, value) pairs in any order, names repeated
FormParams = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def _grouped(params: FormParams) -> dict[str, set[str]]:
    grouped: dict[str, set[str]] = {}
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        grouped.setdefault(str(name), set()).update(str(v) for v in values)
    return grouped


def twilio_signature(auth_token: str, url: str, params: FormParams) -> str:
    """``X-Twilio-Signature`` for a form POST to ``url``: names sorted, each
    followed by its value; a repeated name once per distinct value, values
    sorted (what Twilio's own validators compute)."""
    grouped = _grouped(params)
    data = url + "".join(name + value for name in sorted(grouped) for value in sorted(grouped[name]))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()).decode()


def url_port_variants(url: str) -> list[str]:
    """``url`` as configured, plus the same URL with the scheme's default port
    written out when it has none, or without it when it names the default
    port; a non-default port is kept as it is."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default is None or not parts.netloc:
        return [url]
    if port is None:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif port == default:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    else:
        return [url]
    return [url, other.geturl()]


class TwilioConnector(HttpConnector):
    """Twilio Messages API."""

    channel = "sms"
    required_secrets = ("account_sid", "auth_token")
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=50, receipts=True, webhooks=True)
    default_base_url = "https://api.twilio.com"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not (self.setting("from_number") or self.setting("messaging_service_sid")):
            raise ConfigurationError(f"connector `{self.id}`: setting `from_number` or `messaging_service_sid` "
                                     "is required", code="missing_setting")

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One Messages.json request per message.

        Raises:
            ConfigurationError: credentials or the sender number rejected
                (``results``: messages settled before).
        """
        return send_each(messages, self._send)

    def _send(self, message: OutgoingMessage) -> SendResult:
        to = message.recipient.strip()
        if not E164.match(to):
            return SendResult.permanent(message.id, "21211", "To is not an E.164 number")
        form = {"To": to, "Body": message.body}
        if self.setting("messaging_service_sid"):
            form["MessagingServiceSid"] = str(self.setting("messaging_service_sid"))
        else:
            form["From"] = str(self.setting("from_number"))
        if self.setting("status_callback"):
            form["StatusCallback"] = str(self.setting("status_callback"))
        sid = self.secret("account_sid")
        try:
            response = self.request("POST", f"{self.base_url}/2010-04-01/Accounts/{sid}/Messages.json",
                                    data=form, auth=(sid, self.secret("auth_token")))
        except TransportFailure as failure:
            return failure.result_for(message.id)
        try:
            answer = self.json_body(response)
        except TransportFailure as failure:
            return http_status_result(message.id, response) or failure.result_for(message.id)
        if 200 <= response.status_code < 300 and answer.get("sid"):
            return SendResult.accepted(message.id, str(answer["sid"]), str(answer.get("status") or "queued"))
        code = answer.get("code")
        text = str(answer.get("message", ""))[:200]
        kind, suppress = CODES.get(int(code), ("", False)) if isinstance(code, int) else ("", False)
        if kind == "config" or (not kind and response.status_code == 401):
            raise ConfigurationError(f"connector `{self.id}`: Twilio refused: {code} {text}", code=str(code))
        if kind == "retryable" or response.status_code == 429:
            return SendResult.retryable(message.id, str(code or "http_429"), text,
                                        retry_after_seconds(response) or 1.0)
        if kind == "permanent":
            return SendResult.permanent(message.id, str(code), text, suppress=suppress)
        status = http_status_result(message.id, response)
        if status is not None:
            return status
        return SendResult.permanent(message.id, str(code or f"http_{response.status_code}"), text)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> list[FeedbackItem]:
        """Check a status callback posted to the ``status_callback`` URL and
        return one ``receipt`` item (``MessageSid``, ``MessageStatus``,
        ``ErrorCode``).

        Raises:
            WebhookVerificationError: no or a wrong ``X-Twilio-Signature``.
        """
        url = str(self.setting("status_callback") or "")
        given = {k.lower(): v for k, v in headers.items()}.get("x-twilio-signature", "")
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        token = self.secret("auth_token")
        # every variant is compared (no early exit), in constant time each
        matches = [hmac.compare_digest(given.encode(), twilio_signature(token, variant, pairs).encode())
                   for variant in url_port_variants(url)] if url else []
        if not any(matches):
            raise WebhookVerificationError("bad X-Twilio-Signature", code="signature")
        params = dict(pairs)
        raw = str(params.get("MessageStatus") or "")
        data = {"provider_status": raw}
        if params.get("ErrorCode"):
            data["code"] = data["error_code"] = str(params["ErrorCode"])
        return [FeedbackItem("receipt", provider_id=params.get("MessageSid"), sender=params.get("To"),
                             status=STATUSES.get(raw, "pending"), data=data)]

    def reconcile(self, messages: Sequence[tuple[OutgoingMessage, datetime | None]]) -> list[FeedbackItem]:
        """List Messages by ``To`` + ``DateSent`` per unknown message and
        match our body (see the module doc); each Twilio message settles at
        most one of ours.

        Raises:
            ConfigurationError: credentials rejected.
            ConnectorError: the list failed; ask again later.
        """
        items: list[FeedbackItem] = []
        used: set[str] = set()
        for message, at in messages:
            at = at or self.clock()
            earliest = at - timedelta(minutes=1)
            candidates = []
            for found in self._list(message.recipient.strip(), at):
                created = _twilio_time(found.get("date_created"))
                if (found.get("body") == message.body and str(found.get("sid")) not in used
                        and (created is None or created >= earliest)):
                    candidates.append((created or at, str(found.get("sid")), found))
            if not candidates:
                continue
            _, sid, found = min(candidates, key=lambda c: (c[0], c[1]))
            used.add(sid)
            raw = str(found.get("status") or "")
            data = {"provider_status": raw, "source": "Messages list"}
            if found.get("error_code"):
                data["code"] = str(found["error_code"])
            items.append(FeedbackItem("receipt", provider_id=sid, message_id=message.id, sender=message.recipient,
                                      status=STATUSES.get(raw, "pending"), data=data))
        return items

    def _list(self, to: str, at: datetime) -> list[Mapping[str, Any]]:
        sid = self.secret("account_sid")
        params = {"To": to, "DateSent": at.strftime("%Y-%m-%d"), "PageSize": "50"}
        try:
            response = self.request("GET", f"{self.base_url}/2010-04-01/Accounts/{sid}/Messages.json",
                                    params=params, auth=(sid, self.secret("auth_token")))
            answer = self.json_body(response)
        except TransportFailure as failure:
            raise ConnectorError(f"connector `{self.id}`: Messages list: {failure.detail}", code=failure.code) from None
        if response.status_code == 401:
            raise ConfigurationError(f"connector `{self.id}`: Twilio refused the credentials", code="20003")
        if response.status_code != 200:
            raise ConnectorError(f"connector `{self.id}`: Messages list answered HTTP {response.status_code}",
                                 code=str(answer.get("code") or response.status_code))
        return [m for m in answer.get("messages") or [] if isinstance(m, Mapping)]


def _twilio_time(value: Any) -> datetime | None:
    """Twilio's RFC 2822 dates (``Wed, 18 Aug 2021 20:01:10 +0000``)."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
