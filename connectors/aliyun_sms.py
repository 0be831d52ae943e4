"""Aliyun SMS (阿里云短信, dysmsapi 2017-05-25) over its RPC API.

Requests are signed with signature V2 (``SignatureMethod=HMAC-SHA1``,
``SignatureVersion=1.0``): parameters sorted by name, each percent-encoded per
RFC 3986 (space ``%20``, ``*`` ``%2A``, ``~`` kept), joined as
``POST&%2F&<encoded canonical query>`` and signed with ``AccessKeySecret + "&"``.

One message → ``SendSms`` with ``OutId`` = our message id. Several messages of
one template → ``SendBatchSms`` (≤100 numbers, a sign name and parameters per
number). A batch the provider rejects for a per-number reason (an illegal
number, the number's flow control, missing parameters) was not sent at all, so
its messages are resent one by one to find which one failed.

**Receipts**: the SmsReport HTTP push (a JSON list of ``{phone_number,
send_time, report_time, success, err_code, err_msg, biz_id, out_id}``) is
accepted by :meth:`~AliyunSmsConnector.verify_webhook` with the
``receipt_token`` secret in the URL (Aliyun does not sign it). **Reconcile**:
``QuerySendDetails`` by phone number and send date (China time) finds a
message whose send timed out — by ``OutId`` (``SendSms``), or for a batch send
(no OutId) by template and send time.

Settings: ``sign_name`` (default sign; ``options.sign_name`` overrides per
message), ``region`` (default cn-hangzhou), ``base_url`` (default
``https://dysmsapi.aliyuncs.com``), timeouts. Secrets: ``access_key_id``,
``access_key_secret``, optional ``receipt_token``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from engine.ports import (
    Capabilities,
    ConfigurationError,
    ConnectorError,
    FeedbackItem,
    OutgoingMessage,
    SendResult,
)

from ._base import HttpConnector, TransportFailure, chunks, http_status_result
from .receipts import CHINA, DELIVERED, PENDING, UNDELIVERED, check_token, china_time, digits, json_list

API_VERSION = "2017-05-25"
BATCH_LIMIT = 100

#: Code → (kind, retry_after). kind: accepted | retryable | permanent | unknown | config | per_number
CODES: Mapping[str, tuple[str, float | None]] = {
    "OK": ("accepted", None),
    # per number: flow control of one number (≤1/min, 5/h, 10/day for codes …)
    "isv.BUSINESS_LIMIT_CONTROL": ("retryable_number", 3600.0),
    "isv.MOBILE_NUMBER_ILLEGAL": ("permanent_number", None),
    "isv.MOBILE_COUNT_OVER_LIMIT": ("permanent", None),
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED": ("permanent_number", None),
    "isv.BLACK_KEY_CONTROL_LIMIT": ("permanent_number", None),
    "isv.SMS_CONTENT_ILLEGAL": ("permanent_number", None),
    "isv.TEMPLATE_MISSING_PARAMETERS": ("permanent_number", None),
    "isv.INVALID_JSON_PARAM": ("permanent_number", None),
    "isv.PARAM_LENGTH_LIMIT": ("permanent_number", None),
    "isv.PARAM_NOT_SUPPORT_URL": ("permanent_number", None),
    "isv.INVALID_PARAMETERS": ("permanent_number", None),
    "isv.TEMPLATE_PARAMS_ILLEGAL": ("permanent_number", None),
    # account-wide caps: everything waits
    "isv.DAY_LIMIT_CONTROL": ("retryable", 3600.0),
    "isv.MONTH_LIMIT_CONTROL": ("retryable", 86400.0),
    "Throttling.User": ("retryable", 1.0),
    "Throttling": ("retryable", 1.0),
    "isp.SYSTEM_ERROR": ("unknown", None),
    "ServiceUnavailable": ("retryable", 5.0),
    # configuration: stop the connector
    "SignatureDoesNotMatch": ("config", None),
    "IncompleteSignature": ("config", None),
    "InvalidAccessKeyId.NotFound": ("config", None),
    "InvalidAccessKeyId.Inactive": ("config", None),
    "InvalidTimeStamp.Expired": ("config", None),
    "SignatureNonceUsed": ("retryable", 0.0),
    "isp.RAM_PERMISSION_DENY": ("config", None),
    "Forbidden.RAM": ("config", None),
    "isv.SMS_SIGNATURE_ILLEGAL": ("config", None),
    "isv.SMS_TEMPLATE_ILLEGAL": ("config", None),
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": ("config", None),
    "isv.SIGNATURE_SCENE_ILLEGAL": ("config", None),
    "isv.AMOUNT_NOT_ENOUGH": ("config", None),
    "isv.OUT_OF_SERVICE": ("config", None),
    "isv.PRODUCT_UN_SUBSCRIPT": ("config", None),
    "isv.PRODUCT_UNSUBSCRIBE": ("config", None),
    "isv.ACCOUNT_NOT_EXISTS": ("config", None),
    "isv.ACCOUNT_ABNORMAL": ("config", None),
}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun's RPC signature wants it."""
    return quote(str(value), safe="~")


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"


def rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """Base64 HMAC-SHA1 signature of ``params`` (without ``Signature``)."""
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_phone(recipient: str) -> str:
    """Aliyun takes ``13800000000``, ``+8613800000000`` or international
    numbers as country code + number without ``+``."""
    number = recipient.strip()
    if number.startswith("+86"):
        return number[3:]
    return number.lstrip("+")


class AliyunSmsConnector(HttpConnector):
    """Aliyun SMS ``SendSms`` / ``SendBatchSms``."""

    channel = "sms"
    required_secrets = ("access_key_id", "access_key_secret")
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=BATCH_LIMIT, receipts=True, webhooks=True)
    default_base_url = "https://dysmsapi.aliyuncs.com"
    #: QuerySendDetails SendStatus → our delivery status
    SEND_STATUS: ClassVar[Mapping[int, str]] = {1: PENDING, 2: UNDELIVERED, 3: DELIVERED}

    def verify_webhook(self, headers: Mapping[str, str], body: bytes,
                       query: Mapping[str, str] | None = None) -> list[FeedbackItem]:
        """An SmsReport push: one ``receipt`` per report (``message_id`` from
        ``out_id``, ``provider_id`` the ``biz_id``, ``sender`` the number).
        Aliyun wants ``{"code": 0, "msg": "成功"}`` back.

        Raises:
            UnsupportedOperation: no ``receipt_token`` secret.
            WebhookVerificationError: wrong token or unreadable body.
        """
        check_token(self, query)
        items = []
        for report in json_list(body):
            success = report.get("success")
            ok = success is True or str(success).lower() == "true"
            items.append(FeedbackItem(
                "receipt", provider_id=str(report.get("biz_id") or "") or None,
                message_id=str(report.get("out_id") or "") or None, sender=str(report.get("phone_number") or ""),
                status=DELIVERED if ok else UNDELIVERED, occurred_at=china_time(report.get("report_time")),
                data={"code": str(report.get("err_code") or "")}))
        return items

    def reconcile(self, messages: Sequence[tuple[OutgoingMessage, datetime | None]]) -> list[FeedbackItem]:
        """``QuerySendDetails`` per message (phone number + the China-time date
        it was handed over). Matches the record whose ``OutId`` is our id;
        failing that (a ``SendBatchSms`` has no OutId) one without OutId of the
        same template sent no earlier than a minute before our attempt.

        Raises:
            ConfigurationError: credentials rejected.
            ConnectorError: the query failed; ask again later.
        """
        items: list[FeedbackItem] = []
        used: set[tuple[str, str]] = set()
        for message, at in messages:
            at = at or self.clock()
            found = self._details(message, at)
            match = next((d for d in found if str(d.get("OutId") or "") == message.id), None)
            if match is None:
                earliest = (at - timedelta(minutes=1)).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
                match = next((d for d in found if not d.get("OutId")
                              and str(d.get("TemplateCode") or "") == str(message.template_code)
                              and str(d.get("SendDate") or "") >= earliest
                              and (str(d.get("PhoneNum")), str(d.get("SendDate"))) not in used), None)
            if match is None:
                continue
            used.add((str(match.get("PhoneNum")), str(match.get("SendDate"))))
            status = self.SEND_STATUS.get(int(match.get("SendStatus") or 1), PENDING)
            items.append(FeedbackItem("receipt", message_id=message.id, sender=str(match.get("PhoneNum") or ""),
                                      status=status, occurred_at=china_time(match.get("ReceiveDate")),
                                      data={"code": str(match.get("ErrCode") or ""), "source": "QuerySendDetails"}))
        return items

    def _details(self, message: OutgoingMessage, at: datetime) -> list[Mapping[str, Any]]:
        params = {"PhoneNumber": aliyun_phone(message.recipient), "SendDate": at.astimezone(CHINA).strftime("%Y%m%d"),
                  "PageSize": "50", "CurrentPage": "1"}
        try:
            answer = self._call("QuerySendDetails", params)
        except TransportFailure as failure:
            raise ConnectorError(f"connector `{self.id}`: QuerySendDetails: {failure.detail}",
                                 code=failure.code) from None
        if isinstance(answer, SendResult):
            raise ConnectorError(f"connector `{self.id}`: QuerySendDetails: {answer.code}", code=answer.code)
        code = str(answer.get("Code", ""))
        if code != "OK":
            if CODES.get(code, ("", None))[0] == "config":
                raise ConfigurationError(f"connector `{self.id}`: Aliyun refused QuerySendDetails: {code}", code=code)
            raise ConnectorError(f"connector `{self.id}`: QuerySendDetails answered {code}", code=code)
        dtos = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
        wanted = digits(message.recipient)
        return [d for d in dtos if isinstance(d, Mapping) and digits(str(d.get("PhoneNum") or "")) == wanted]

    def _signed(self, action: str, params: Mapping[str, str]) -> dict[str, str]:
        full = {
            "AccessKeyId": self.secret("access_key_id"),
            "Action": action,
            "Format": "JSON",
            "RegionId": str(self.setting("region", "cn-hangzhou")),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": self.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": API_VERSION,
            **params,
        }
        full["Signature"] = rpc_signature("POST", full, self.secret("access_key_secret"))
        return full

    def _sign_name(self, message: OutgoingMessage) -> str | None:
        sign = message.options.get("sign_name") or self.setting("sign_name")
        return str(sign) if sign else None

    def _call(self, action: str, params: Mapping[str, str]) -> Mapping[str, Any] | SendResult:
        response = self.request("POST", f"{self.base_url}/", data=self._signed(action, params),
                                headers={"Accept": "application/json"})
        try:
            return self.json_body(response)
        except TransportFailure:
            status = http_status_result("", response)
            if status is not None:
                return status
            raise

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send SMS; one result per message in order.

        Raises:
            ConfigurationError: credentials, sign name or template rejected, or
                the account is out of balance/service (``results``: settled ones).
        """
        results: dict[str, SendResult] = {}
        groups: dict[str, list[OutgoingMessage]] = {}
        for message in messages:
            problem = self._check(message)
            if problem is not None:
                results[message.id] = problem
            else:
                groups.setdefault(str(message.template_code), []).append(message)
        try:
            for group in groups.values():
                for chunk in chunks(group, BATCH_LIMIT):
                    results.update(self._send_chunk(chunk))
        except ConfigurationError as exc:
            exc.results = [results[m.id] for m in messages if m.id in results] + exc.results
            raise
        return [results[m.id] for m in messages]

    def _check(self, message: OutgoingMessage) -> SendResult | None:
        if not message.template_code:
            return SendResult.permanent(message.id, "missing_template_code",
                                        "Aliyun sends only approved templates: the template needs an sms template code")
        if not self._sign_name(message):
            return SendResult.permanent(message.id, "missing_sign_name", "no sign_name setting or option")
        if not aliyun_phone(message.recipient).isdigit():
            return SendResult.permanent(message.id, "isv.MOBILE_NUMBER_ILLEGAL", "not a phone number")
        return None

    def _send_chunk(self, chunk: Sequence[OutgoingMessage]) -> dict[str, SendResult]:
        if len(chunk) == 1:
            return {chunk[0].id: self._send_one(chunk[0])}
        template = str(chunk[0].template_code)
        params = {
            "PhoneNumberJson": json.dumps([aliyun_phone(m.recipient) for m in chunk], ensure_ascii=False),
            "SignNameJson": json.dumps([self._sign_name(m) for m in chunk], ensure_ascii=False),
            "TemplateCode": template,
        }
        if any(m.params for m in chunk):
            params["TemplateParamJson"] = json.dumps([dict(m.params) for m in chunk], ensure_ascii=False)
        try:
            answer = self._call("SendBatchSms", params)
        except TransportFailure as failure:
            return {m.id: failure.result_for(m.id) for m in chunk}
        if isinstance(answer, SendResult):
            return {m.id: SendResult(m.id, answer.outcome, None, answer.code, answer.detail,
                                     answer.retry_after) for m in chunk}
        code = str(answer.get("Code", ""))
        kind, _ = CODES.get(code, ("permanent", None))
        if kind.endswith("_number"):
            # The whole request was refused for one number's sake: nothing went
            # out, so find the culprit by sending each on its own.
            return {m.id: self._send_one(m) for m in chunk}
        return {m.id: self._classify(m.id, answer) for m in chunk}

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        params = {
            "PhoneNumbers": aliyun_phone(message.recipient),
            "SignName": str(self._sign_name(message)),
            "TemplateCode": str(message.template_code),
            "OutId": message.id,
        }
        if message.params:
            params["TemplateParam"] = json.dumps(dict(message.params), ensure_ascii=False)
        try:
            answer = self._call("SendSms", params)
        except TransportFailure as failure:
            return failure.result_for(message.id)
        if isinstance(answer, SendResult):
            return SendResult(message.id, answer.outcome, None, answer.code, answer.detail, answer.retry_after)
        return self._classify(message.id, answer)

    def _classify(self, message_id: str, answer: Mapping[str, Any]) -> SendResult:
        code = str(answer.get("Code", ""))
        text = str(answer.get("Message", ""))[:200]
        kind, retry_after = CODES.get(code, ("permanent", None))
        if kind == "accepted":
            return SendResult.accepted(message_id, str(answer.get("BizId") or "") or None, code)
        if kind == "config":
            raise ConfigurationError(f"connector `{self.id}`: Aliyun refused the request: {code} {text}", code=code)
        if kind.startswith("retryable"):
            return SendResult.retryable(message_id, code, text, retry_after)
        if kind == "unknown":
            return SendResult.unknown(message_id, code, text)
        return SendResult.permanent(message_id, code or "unrecognised_answer", text)
