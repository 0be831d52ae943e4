"""Tencent Cloud SMS (腾讯云短信, API 2021-01-11) ``SendSms``, signed with
TC3-HMAC-SHA256 (Signature v3).

Tencent's ``SendSms`` takes up to 200 numbers that share one template, sign
name and ``TemplateParamSet``, and answers per number (``SendStatusSet``). So
messages are grouped by (template, sign, parameters); each group goes in
requests of ≤200 distinct numbers, and each number's ``Code`` settles its
message. ``SessionContext`` carries our message id (or ``batch:<first id>``).

Template parameters are positional: ``params`` keys ``"1", "2", …`` are sent in
numeric order; other keys in their given order.

**Receipts**: the status callback (a JSON list of ``{user_receive_time,
nationcode, mobile, report_status, errmsg, description, sid}``) is accepted by
:meth:`~TencentSmsConnector.verify_webhook` with the ``receipt_token`` secret in
the URL (Tencent does not sign it). **Reconcile**: ``PullSmsSendStatus``
hands out each status report once (it must be enabled for the app), so every
report it returns is applied: those whose ``SessionContext`` names one of the
unknown messages (our id, or ``batch:<first id>`` + the number) settle it, the
rest update sent messages by ``SerialNo``.

**Limits** (``LimitExceeded.*``, per number in ``SendStatusSet`` or for the
whole request): a frequency or daily cap is not a failure, the message waits
for the window to reopen (``retryable`` with ``retry_after``; the dispatcher
gives the attempt back for these codes): a daily cap (``…DailyLimit``) until
the next midnight in the business time zone (Tencent counts calendar days), a
one-hour cap an hour, a thirty-second cap 30 s, anything else (e.g.
``DeliveryFrequencyLimit``, whose window the answer does not say) an hour.
``LimitExceeded.PhoneNumberCountLimit`` (over 200 numbers in one request) and
``LimitExceeded.AppCountryOrRegionInBlacklist`` (a destination barred in the
console) are no windows.

Settings: ``sdk_app_id`` (required), ``sign_name``, ``region`` (default
ap-guangzhou), ``base_url`` (default ``https://sms.tencentcloudapi.com``),
``timezone`` (the business time zone for daily windows, default
Asia/Shanghai), timeouts. Secrets: ``secret_id``, ``secret_key``, optional
``receipt_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.ports import (
    Capabilities,
    ConfigurationError,
    ConnectorError,
    FeedbackItem,
    OutgoingMessage,
    SendResult,
)

from ._base import HttpConnector, TransportFailure, http_status_result
from .receipts import DELIVERED, UNDELIVERED, check_token, china_time, json_list

SERVICE = "sms"
API_VERSION = "2021-01-11"
BATCH_LIMIT = 200
CONTENT_TYPE = "application/json; charset=utf-8"

#: Request-level error codes (``Response.Error.Code``) → (kind, retry_after).
REQUEST_ERRORS: Mapping[str, tuple[str, float | None]] = {
    "AuthFailure.SignatureFailure": ("config", None),
    "AuthFailure.SecretIdNotFound": ("config", None),
    "AuthFailure.SignatureExpire": ("config", None),  # our clock is off by > 5 min
    "AuthFailure.UnauthorizedOperation": ("config", None),
    "AuthFailure.InvalidSecretId": ("config", None),
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail": ("config", None),
    "UnauthorizedOperation.IndividualUserMarketingSmsPermissionDeny": ("config", None),
    "FailedOperation.SignatureIncorrectOrUnapproved": ("config", None),
    "FailedOperation.TemplateIncorrectOrUnapproved": ("config", None),
    "FailedOperation.InsufficientBalanceInSmsPackage": ("config", None),
    "FailedOperation.TemplateUnapprovedOrNotExist": ("config", None),
    "RequestLimitExceeded": ("retryable", 1.0),
    "InternalError.Timeout": ("unknown", None),
    "InternalError.RequestTimeException": ("config", None),
    "InternalError.SendAndRecvFail": ("unknown", None),
    "InternalError.OtherError": ("unknown", None),
    "InternalError": ("unknown", None),
    "LimitExceeded.PhoneNumberCountLimit": ("per_number", None),
    "LimitExceeded.AppCountryOrRegionInBlacklist": ("permanent", None),
    "InvalidParameterValue.IncorrectPhoneNumber": ("per_number", None),
    "FailedOperation.PhoneNumberInBlacklist": ("per_number", None),
    "InvalidParameterValue.TemplateParameterFormatError": ("permanent", None),
    "InvalidParameterValue.TemplateParameterLengthLimit": ("permanent", None),
    "FailedOperation.MissingTemplateToModify": ("permanent", None),
}

#: Per-number codes (``SendStatusSet[].Code``) → (kind, retry_after, suppress).
NUMBER_CODES: Mapping[str, tuple[str, float | None, bool]] = {
    "Ok": ("accepted", None, False),
    "LimitExceeded.AppCountryOrRegionInBlacklist": ("permanent", None, False),
    "FailedOperation.MarketingSendTimeConstraint": ("retryable", 3600.0, False),  # marketing only 08:00–22:00
    "FailedOperation.PhoneNumberInBlacklist": ("permanent", None, True),
    "FailedOperation.ContainSensitiveWord": ("permanent", None, False),
    "FailedOperation.FailResolvePacket": ("permanent", None, False),
    "InvalidParameterValue.IncorrectPhoneNumber": ("permanent", None, False),
    "InvalidParameterValue.ContentLengthLimit": ("permanent", None, False),
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter": ("permanent", None, False),
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber": ("permanent", None, False),
    "UnsupportedOperation.UnsupportedRegion": ("permanent", None, False),
    "FailedOperation.SignatureIncorrectOrUnapproved": ("config", None, False),
    "FailedOperation.TemplateIncorrectOrUnapproved": ("config", None, False),
    "FailedOperation.InsufficientBalanceInSmsPackage": ("config", None, False),
    "InternalError.Timeout": ("unknown", None, False),
}


#: ``LimitExceeded.*`` codes that are not a window to wait for
NOT_A_WINDOW = frozenset({"LimitExceeded.PhoneNumberCountLimit", "LimitExceeded.AppCountryOrRegionInBlacklist"})
DEFAULT_TIMEZONE = "Asia/Shanghai"


def limit_wait(code: str, now: datetime, zone: ZoneInfo) -> float | None:
    """Seconds until the window of the frequency or daily cap ``code``
    reopens (see the module doc), or None when ``code`` is no such cap.
    ``now`` is aware; a daily window reopens at the next midnight in ``zone``."""
    if not code.startswith("LimitExceeded.") or code in NOT_A_WINDOW:
        return None
    name = code.removeprefix("LimitExceeded.")
    if "Daily" in name:
        local = now.astimezone(zone)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
        return max(1.0, (midnight.astimezone(UTC) - now.astimezone(UTC)).total_seconds())
    if "ThirtySecond" in name:
        return 30.0
    return 3600.0  # OneHourLimit, DeliveryFrequencyLimit and caps not listed here


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(*, secret_id: str, secret_key: str, service: str, host: str, timestamp: int,
                      payload: str, content_type: str = CONTENT_TYPE) -> str:
    """The ``Authorization`` header of a POST with a JSON ``payload``
    (signed headers ``content-type;host``)."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical_request = "\n".join([
        "POST", "/", "",
        f"content-type:{content_type}\nhost:{host}\n",
        "content-type;host",
        hashlib.sha256(payload.encode("utf-8")).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, "
            f"Signature={signature}")


def e164(recipient: str) -> str:
    """Tencent wants E.164; a bare 11-digit mainland number gets ``+86``."""
    number = recipient.strip()
    if not number.startswith("+") and len(number) == 11 and number.startswith("1"):
        return "+86" + number
    return number


def ordered_params(params: Mapping[str, Any]) -> list[str]:
    keys = list(params)
    if keys and all(str(k).isdigit() for k in keys):
        keys.sort(key=lambda k: int(k))
    return [str(params[k]) for k in keys]


class TencentSmsConnector(HttpConnector):
    """Tencent Cloud SMS ``SendSms``."""

    channel = "sms"
    required_secrets = ("secret_id", "secret_key")
    required_settings = ("sdk_app_id",)
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=BATCH_LIMIT, receipts=True, webhooks=True)
    default_base_url = "https://sms.tencentcloudapi.com"
    #: how many reports one PullSmsSendStatus asks for (the API's maximum)
    PULL_LIMIT = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.zone = ZoneInfo(str(self.setting("timezone") or DEFAULT_TIMEZONE))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"connector `{self.id}`: setting `timezone` is not a time zone "
                                     f"({self.setting('timezone')!r})", code="bad_setting") from None

    def _limited(self, message_id: str, code: str, text: str) -> SendResult | None:
        """A rate-limited result for a ``LimitExceeded.*`` window, else None."""
        wait = limit_wait(code, self.clock(), self.zone)
        return None if wait is None else SendResult.retryable(message_id, code, text or code, wait)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> list[FeedbackItem]:
        """A status callback: one ``receipt`` per report (``provider_id`` the
        ``sid`` = SerialNo of the send). Tencent wants
        ``{"result": 0, "errmsg": "OK"}`` back.

        Raises:
            UnsupportedOperation: no ``receipt_token`` secret.
            WebhookVerificationError: wrong token or unreadable body.
        """
        check_token(self, query)
        items = []
        for report in json_list(body):
            ok = str(report.get("report_status") or "").upper() == "SUCCESS"
            number = f"+{report.get('nationcode') or '86'}{report.get('mobile') or ''}"
            items.append(FeedbackItem(
                "receipt", provider_id=str(report.get("sid") or "") or None, sender=number,
                status=DELIVERED if ok else UNDELIVERED, occurred_at=china_time(report.get("user_receive_time")),
                data={"code": str(report.get("errmsg") or "")}))
        return items

    def reconcile(self, messages: Sequence[tuple[OutgoingMessage, datetime | None]]) -> list[FeedbackItem]:
        """Pull status reports (``PullSmsSendStatus``) until none are left or
        ten pages were read, and turn each into a receipt, matched to
        ``messages`` by ``SessionContext`` (see the module doc).

        Raises:
            ConfigurationError: credentials rejected.
            ConnectorError: the pull failed; ask again later.
        """
        by_id = {m.id: m for m, _ in messages}
        batch_candidates = sorted(((int(m.id), m) for m, _ in messages if m.id.isdigit()), key=lambda x: x[0])
        claimed: set[str] = set()
        items: list[FeedbackItem] = []
        for _ in range(10):
            reports = self._pull()
            for report in reports:
                context = str(report.get("SessionContext") or "")
                number = str(report.get("PhoneNumber") or "")
                message_id = None
                if context in by_id and e164(by_id[context].recipient) == number:
                    message_id = context
                elif context.startswith("batch:") and context[6:].isdigit():
                    first = int(context[6:])
                    message_id = next((str(i) for i, m in batch_candidates
                                       if i >= first and str(i) not in claimed and e164(m.recipient) == number), None)
                if message_id is not None:
                    claimed.add(message_id)
                ok = str(report.get("ReportStatus") or "").upper() == "SUCCESS"
                items.append(FeedbackItem(
                    "receipt", provider_id=str(report.get("SerialNo") or "") or None, message_id=message_id,
                    sender=number, status=DELIVERED if ok else UNDELIVERED,
                    occurred_at=china_time(report.get("UserReceiveTime")),
                    data={"code": str(report.get("Description") or ""), "source": "PullSmsSendStatus"}))
            if len(reports) < self.PULL_LIMIT:
                break
        return items

    def _pull(self) -> list[Mapping[str, Any]]:
        body = {"Limit": self.PULL_LIMIT, "SmsSdkAppId": str(self.setting("sdk_app_id"))}
        try:
            answer = self._post(body, action="PullSmsSendStatus")
        except TransportFailure as failure:
            raise ConnectorError(f"connector `{self.id}`: PullSmsSendStatus: {failure.detail}",
                                 code=failure.code) from None
        if isinstance(answer, SendResult):
            raise ConnectorError(f"connector `{self.id}`: PullSmsSendStatus: {answer.code}", code=answer.code)
        error = answer.get("Error")
        if isinstance(error, Mapping):
            code = str(error.get("Code", ""))
            if REQUEST_ERRORS.get(code, ("", None))[0] == "config":
                raise ConfigurationError(f"connector `{self.id}`: Tencent refused PullSmsSendStatus: {code}",
                                         code=code)
            raise ConnectorError(f"connector `{self.id}`: PullSmsSendStatus answered {code}", code=code)
        return [r for r in answer.get("PullSmsSendStatusSet") or [] if isinstance(r, Mapping)]

    def _sign_name(self, message: OutgoingMessage) -> str | None:
        sign = message.options.get("sign_name") or self.setting("sign_name")
        return str(sign) if sign else None

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send SMS; one result per message in order.

        Raises:
            ConfigurationError: credentials, sign name or template rejected, or
                the package is used up (``results``: messages already settled).
        """
        results: dict[str, SendResult] = {}
        groups: dict[tuple[str, str, str], list[OutgoingMessage]] = {}
        for message in messages:
            if not message.template_code:
                results[message.id] = SendResult.permanent(message.id, "missing_template_code",
                                                           "Tencent sends only approved templates")
            elif not e164(message.recipient).startswith("+"):
                results[message.id] = SendResult.permanent(message.id, "InvalidParameterValue.IncorrectPhoneNumber",
                                                           "not an E.164 number")
            else:
                key = (str(message.template_code), str(self._sign_name(message) or ""),
                       json.dumps(ordered_params(message.params), ensure_ascii=False))
                groups.setdefault(key, []).append(message)
        try:
            for group in groups.values():
                for request in self._requests(group):
                    results.update(self._send(request))
        except ConfigurationError as exc:
            exc.results = [results[m.id] for m in messages if m.id in results] + exc.results
            raise
        return [results[m.id] for m in messages]

    @staticmethod
    def _requests(group: list[OutgoingMessage]) -> list[list[OutgoingMessage]]:
        """Split into requests of ≤200 distinct numbers (a number twice in one
        request could not be told apart in the answer)."""
        requests: list[tuple[set[str], list[OutgoingMessage]]] = []
        for message in group:
            number = e164(message.recipient)
            for numbers, members in requests:
                if number not in numbers and len(members) < BATCH_LIMIT:
                    numbers.add(number)
                    members.append(message)
                    break
            else:
                requests.append(({number}, [message]))
        return [members for _, members in requests]

    def _post(self, body: Mapping[str, Any], action: str = "SendSms") -> Mapping[str, Any] | SendResult:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        host = urlsplit(self.base_url).netloc
        timestamp = int(self.now_ts())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Region": str(self.setting("region", "ap-guangzhou")),
            "X-TC-Timestamp": str(timestamp),
            "Authorization": tc3_authorization(secret_id=self.secret("secret_id"),
                                               secret_key=self.secret("secret_key"), service=SERVICE,
                                               host=host, timestamp=timestamp, payload=payload),
        }
        response = self.request("POST", f"{self.base_url}/", data=payload.encode("utf-8"), headers=headers)
        try:
            answer = self.json_body(response)
        except TransportFailure:
            status = http_status_result("", response)
            if status is not None:
                return status
            raise
        inner = answer.get("Response")
        if not isinstance(inner, Mapping):
            raise TransportFailure("bad_response", "answer without Response", sent=True)
        return inner

    def _send(self, members: list[OutgoingMessage]) -> dict[str, SendResult]:
        first = members[0]
        body: dict[str, Any] = {
            "PhoneNumberSet": [e164(m.recipient) for m in members],
            "SmsSdkAppId": str(self.setting("sdk_app_id")),
            "TemplateId": str(first.template_code),
            "SessionContext": first.id if len(members) == 1 else f"batch:{first.id}",
        }
        sign = self._sign_name(first)
        if sign:
            body["SignName"] = sign
        if first.params:
            body["TemplateParamSet"] = ordered_params(first.params)
        try:
            answer = self._post(body)
        except TransportFailure as failure:
            return {m.id: failure.result_for(m.id) for m in members}
        if isinstance(answer, SendResult):
            return {m.id: SendResult(m.id, answer.outcome, None, answer.code, answer.detail, answer.retry_after)
                    for m in members}
        error = answer.get("Error")
        if isinstance(error, Mapping):
            return self._request_error(members, error)
        by_number = {str(s.get("PhoneNumber")): s for s in answer.get("SendStatusSet") or []
                     if isinstance(s, Mapping)}
        results = {}
        config_error: ConfigurationError | None = None
        for message in members:
            status = by_number.get(e164(message.recipient))
            if status is None:
                results[message.id] = SendResult.unknown(message.id, "missing_status",
                                                          "number missing from SendStatusSet")
                continue
            code = str(status.get("Code", ""))
            text = str(status.get("Message", ""))[:200]
            limited = self._limited(message.id, code, text)
            if limited is not None:
                results[message.id] = limited
                continue
            kind, retry_after, suppress = NUMBER_CODES.get(code, ("permanent", None, False))
            if kind == "accepted":
                results[message.id] = SendResult.accepted(message.id, str(status.get("SerialNo") or "") or None, code)
            elif kind == "retryable":
                results[message.id] = SendResult.retryable(message.id, code, text, retry_after)
            elif kind == "unknown":
                results[message.id] = SendResult.unknown(message.id, code, text)
            elif kind == "config":
                config_error = ConfigurationError(f"connector `{self.id}`: Tencent refused: {code} {text}", code=code)
            else:
                results[message.id] = SendResult.permanent(message.id, code, text, suppress=suppress)
        if config_error is not None:
            config_error.results = list(results.values())
            raise config_error
        return results

    def _request_error(self, members: list[OutgoingMessage], error: Mapping[str, Any]) -> dict[str, SendResult]:
        code = str(error.get("Code", ""))
        text = str(error.get("Message", ""))[:200]
        if limit_wait(code, self.clock(), self.zone) is not None:
            if code.startswith("LimitExceeded.PhoneNumber") and len(members) > 1:
                # one number's cap refused the whole request: find it, send the rest
                out: dict[str, SendResult] = {}
                for message in members:
                    out.update(self._send([message]))
                return out
            return {m.id: self._limited(m.id, code, text) or SendResult.retryable(m.id, code, text)
                    for m in members}
        kind, retry_after = REQUEST_ERRORS.get(code, ("permanent", None))
        if kind == "config":
            raise ConfigurationError(f"connector `{self.id}`: Tencent refused the request: {code} {text}", code=code)
        if kind == "per_number" and len(members) > 1:
            # the request was refused as a whole: send one by one to find the culprit
            out = {}
            for message in members:
                out.update(self._send([message]))
            return out
        if kind == "per_number":
            suppress = code == "FailedOperation.PhoneNumberInBlacklist"
            return {m.id: SendResult.permanent(m.id, code, text, suppress=suppress) for m in members}
        if kind == "retryable":
            return {m.id: SendResult.retryable(m.id, code, text, retry_after) for m in members}
        if kind == "unknown":
            return {m.id: SendResult.unknown(m.id, code, text) for m in members}
        return {m.id: SendResult.permanent(m.id, code or "unrecognised_answer", text) for m in members}
