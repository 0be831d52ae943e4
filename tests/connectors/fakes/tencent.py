"""Fake Tencent Cloud SMS (SendSms 2021-01-11): checks the TC3-HMAC-SHA256
Authorization (recomputed here), the X-TC headers, the timestamp window (5
min), SmsSdkAppId, sign and template, ≤200 numbers; answers per number in
SendStatusSet like the real service."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from .base import FakeProvider, json_response

AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=([^/]+)/(\d{4}-\d{2}-\d{2})/sms/tc3_request, "
                  r"SignedHeaders=([a-z;-]+), Signature=([0-9a-f]{64})$")
CHINA = ZoneInfo("Asia/Shanghai")
E164_CN = re.compile(r"^\+861\d{10}$")


def _h(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class FakeTencent(FakeProvider):
    def __init__(self, secret_id: str = "AKIDtest", secret_key: str = "tencent-test-key",
                 sdk_app_id: str = "1400000001") -> None:
        super().__init__()
        self.secret_id, self.secret_key, self.sdk_app_id = secret_id, secret_key, sdk_app_id
        self.signs = {"促销通"}
        self.templates = {"1001": 1, "1002": 0}   # template id → number of parameters
        self.blacklist: set[str] = set()
        self.daily_limited: set[str] = set()
        self.number_codes: dict[str, str] = {}   # number → the Code its SendStatusSet entry answers
        self.request_errors: list[str] = []
        self.delivered: list[dict] = []
        self.undelivered: set[str] = set()   # numbers whose report says FAIL
        self.reports: list[dict] = []        # status reports not yet pulled (PullSmsSendStatus hands each out once)
        self._ids = itertools.count(1)

    def _error(self, code: str, message: str = "") -> Response:
        return json_response({"Response": {"Error": {"Code": code, "Message": message or code},
                                           "RequestId": f"req-{next(self._ids)}"}})

    def handle(self, request: Request) -> Response:
        h = request.headers
        if h.get("X-TC-Action") not in ("SendSms", "PullSmsSendStatus"):
            return self._error("InvalidAction")
        if h.get("X-TC-Version") != "2021-01-11":
            return self._error("InvalidParameter.InvalidVersion" if h.get("X-TC-Version") else "MissingParameter")
        match = AUTH.match(h.get("Authorization", ""))
        if not match:
            return self._error("AuthFailure.SignatureFailure", "malformed Authorization")
        secret_id, date, signed_headers, signature = match.groups()
        if secret_id != self.secret_id:
            return self._error("AuthFailure.SecretIdNotFound")
        try:
            timestamp = int(h.get("X-TC-Timestamp", ""))
        except ValueError:
            return self._error("MissingParameter", "X-TC-Timestamp")
        if abs(timestamp - self.now()) > 300:
            return self._error("AuthFailure.SignatureExpire")
        if datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") != date:
            return self._error("AuthFailure.SignatureFailure", "date does not match the timestamp")
        body = request.get_data()
        header_lines = "".join(f"{name}:{h.get(name, '').strip().lower() if name == 'content-type' else h.get(name, '').strip()}\n"
                               for name in signed_headers.split(";"))
        canonical = "\n".join(["POST", "/", "", header_lines, signed_headers, hashlib.sha256(body).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), f"{date}/sms/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _h(_h(_h(("TC3" + self.secret_key).encode(), date), "sms"), "tc3_request")
        if not hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signature):
            return self._error("AuthFailure.SignatureFailure")
        try:
            data = json.loads(body)
        except ValueError:
            return self._error("InvalidParameter", "body is not JSON")
        if self.request_errors:
            return self._error(self.request_errors.pop(0))
        if data.get("SmsSdkAppId") != self.sdk_app_id:
            return self._error("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
        if h.get("X-TC-Action") == "PullSmsSendStatus":
            limit = data.get("Limit")
            if not isinstance(limit, int) or not 1 <= limit <= 100:
                return self._error("InvalidParameterValue", "Limit")
            with self.lock:
                batch, self.reports = self.reports[:limit], self.reports[limit:]
            return json_response({"Response": {"PullSmsSendStatusSet": batch, "RequestId": f"req-{next(self._ids)}"}})
        if data.get("SignName") not in self.signs:
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved")
        template = data.get("TemplateId")
        if template not in self.templates:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved")
        if len(data.get("TemplateParamSet") or []) != self.templates[template]:
            return self._error("InvalidParameterValue.TemplateParameterFormatError")
        numbers = data.get("PhoneNumberSet") or []
        if not numbers:
            return self._error("MissingParameter", "PhoneNumberSet")
        if len(numbers) > 200:
            return self._error("LimitExceeded.PhoneNumberCountLimit")
        statuses = []
        for number in numbers:
            if not E164_CN.match(number):
                code = "InvalidParameterValue.IncorrectPhoneNumber"
            elif number in self.blacklist:
                code = "FailedOperation.PhoneNumberInBlacklist"
            elif number in self.daily_limited:
                code = "LimitExceeded.PhoneNumberDailyLimit"
            elif number in self.number_codes:
                code = self.number_codes[number]
            else:
                code = "Ok"
            serial = f"serial-{next(self._ids)}" if code == "Ok" else ""
            if code == "Ok":
                ok = number not in self.undelivered
                received = datetime.fromtimestamp(self.now() + 2, CHINA).strftime("%Y-%m-%d %H:%M:%S")
                with self.lock:
                    self.delivered.append({"number": number, "template": template,
                                           "params": data.get("TemplateParamSet"),
                                           "context": data.get("SessionContext")})
                    self.reports.append({"UserReceiveTime": received, "CountryCode": "86",
                                         "SubscriberNumber": number[3:], "PhoneNumber": number, "SerialNo": serial,
                                         "ReportStatus": "SUCCESS" if ok else "FAIL",
                                         "Description": "DELIVRD" if ok else "MK:0001",
                                         "SessionContext": data.get("SessionContext", "")})
            statuses.append({"SerialNo": serial, "PhoneNumber": number, "Fee": 1 if code == "Ok" else 0,
                             "SessionContext": data.get("SessionContext", ""), "Code": code,
                             "Message": "send success" if code == "Ok" else code, "IsoCode": "CN"})
        return json_response({"Response": {"SendStatusSet": statuses, "RequestId": f"req-{next(self._ids)}"}})
