"""Fake Aliyun SMS (dysmsapi 2017-05-25, RPC style): checks the request as the
provider does — required common parameters, AccessKeyId, a fresh
SignatureNonce, Timestamp within 31 minutes, the HMAC-SHA1 signature recomputed
here from the raw parameters — then the business rules (sign, template and
its parameters, phone numbers, flow control) and answers with the documented
bodies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from werkzeug.wrappers import Request, Response

from .base import FakeProvider, json_response

PHONE = re.compile(r"^(?:\+?86)?1\d{10}$")
CHINA = ZoneInfo("Asia/Shanghai")
COMMON = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod", "SignatureNonce",
          "SignatureVersion", "Timestamp", "Version", "Signature")


def _enc(text: str) -> str:
    # deliberately not the connector's helper: encode everything, then restore the RFC 3986 unreserved set
    return quote(text.encode("utf-8"), safe="").replace("%7E", "~")


class FakeAliyun(FakeProvider):
    def __init__(self, key_id: str = "test-key-id", key_secret: str = "test-key-secret") -> None:
        super().__init__()
        self.key_id, self.key_secret = key_id, key_secret
        self.signs = {"促销通"}
        self.templates: dict[str, list[str]] = {"SMS_100": ["code"], "SMS_200": []}
        self.limited: set[str] = set()       # numbers under flow control
        self.codes: list[str] = []           # next answers to force (e.g. "isv.AMOUNT_NOT_ENOUGH")
        self.nonces: set[str] = set()
        self.delivered: list[dict] = []
        self.undelivered: set[str] = set()   # numbers whose carrier receipt says failed (SendStatus 2)
        self.awaiting: set[str] = set()      # numbers still waiting for a receipt (SendStatus 1)
        self.queries: list[dict] = []
        self.sent_at: list[datetime] = []    # China time of each delivered entry (same index)
        self._ids = itertools.count(1)

    def _error(self, code: str, status: int = 200, message: str = "") -> Response:
        return json_response({"Code": code, "Message": message or code, "RequestId": f"req-{next(self._ids)}"},
                             status)

    def handle(self, request: Request) -> Response:
        params = request.form.to_dict() if request.method == "POST" else request.args.to_dict()
        missing = [p for p in COMMON if p not in params]
        if missing:
            return self._error("MissingParameter", 400, f"missing {missing[0]}")
        if params["AccessKeyId"] != self.key_id:
            return self._error("InvalidAccessKeyId.NotFound", 404)
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            return self._error("InvalidSignatureMethod", 400)
        given = params.pop("Signature")
        canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(params.items()))
        to_sign = f"{request.method}&%2F&{_enc(canonical)}"
        expected = base64.b64encode(hmac.new(f"{self.key_secret}&".encode(), to_sign.encode(),
                                             hashlib.sha1).digest()).decode()
        if given != expected:
            return self._error("SignatureDoesNotMatch", 400, "Specified signature is not matched with our calculation.")
        if params["SignatureNonce"] in self.nonces:
            return self._error("SignatureNonceUsed", 400)
        self.nonces.add(params["SignatureNonce"])
        stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        if abs(stamp - self.now()) > 31 * 60:
            return self._error("InvalidTimeStamp.Expired", 400)
        if params["Version"] != "2017-05-25":
            return self._error("InvalidVersion", 400)
        if self.codes:
            return self._error(self.codes.pop(0))
        if params["Action"] == "SendSms":
            return self._send(params["PhoneNumbers"].split(","), [params.get("SignName", "")] * 1,
                              params.get("TemplateCode", ""), params.get("TemplateParam"), params.get("OutId"),
                              single=True)
        if params["Action"] == "QuerySendDetails":
            return self._query(params)
        if params["Action"] == "SendBatchSms":
            try:
                phones = json.loads(params["PhoneNumberJson"])
                signs = json.loads(params["SignNameJson"])
                tparams = json.loads(params["TemplateParamJson"]) if "TemplateParamJson" in params else None
            except (KeyError, ValueError):
                return self._error("isv.INVALID_JSON_PARAM")
            if len(phones) > 100:
                return self._error("isv.MOBILE_COUNT_OVER_LIMIT")
            if len(signs) != len(phones) or (tparams is not None and len(tparams) != len(phones)):
                return self._error("isv.INVALID_PARAMETERS")
            return self._send(phones, signs, params.get("TemplateCode", ""),
                              [json.dumps(p) for p in tparams] if tparams is not None else None, None, single=False)
        return self._error("InvalidAction.NotFound", 404)

    def _send(self, phones, signs, template, tparam, out_id, *, single) -> Response:
        if len(phones) > 1000:
            return self._error("isv.MOBILE_COUNT_OVER_LIMIT")
        for sign in signs:
            if sign not in self.signs:
                return self._error("isv.SMS_SIGNATURE_ILLEGAL")
        if template not in self.templates:
            return self._error("isv.SMS_TEMPLATE_ILLEGAL")
        raw_params = [tparam] * len(phones) if single or tparam is None else tparam
        for raw in raw_params:
            try:
                values = json.loads(raw) if raw else {}
            except ValueError:
                return self._error("isv.INVALID_JSON_PARAM")
            if not isinstance(values, dict) or any(name not in values for name in self.templates[template]):
                return self._error("isv.TEMPLATE_MISSING_PARAMETERS")
        for phone in phones:
            if not PHONE.match(phone):
                return self._error("isv.MOBILE_NUMBER_ILLEGAL")
            if phone in self.limited:
                return self._error("isv.BUSINESS_LIMIT_CONTROL", message="触发号码天级流控")
        biz_id = f"biz-{next(self._ids)}"
        sent_at = datetime.fromtimestamp(self.now(), CHINA)
        with self.lock:
            for i, phone in enumerate(phones):
                self.delivered.append({"phone": phone, "template": template, "params": raw_params[i],
                                       "out_id": out_id, "biz_id": biz_id})
                self.sent_at.append(sent_at)
        return json_response({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": f"req-{biz_id}"})


    def _query(self, params: dict) -> Response:
        """QuerySendDetails: PhoneNumber (one), SendDate yyyyMMdd within the
        last 30 days, PageSize 1–50, CurrentPage; optional BizId. Answers the
        documented SmsSendDetailDTOs shape (SendStatus 1 waiting, 2 failed,
        3 delivered)."""
        with self.lock:
            self.queries.append(dict(params))
        phone, date = params.get("PhoneNumber", ""), params.get("SendDate", "")
        if not phone or not date or not params.get("PageSize") or not params.get("CurrentPage"):
            return self._error("MissingParameter", 400)
        try:
            day = datetime.strptime(date, "%Y%m%d").date()
            size, page = int(params["PageSize"]), int(params["CurrentPage"])
        except ValueError:
            return self._error("isv.INVALID_PARAMETERS")
        today = datetime.fromtimestamp(self.now(), CHINA).date()
        if not (today - timedelta(days=30) <= day <= today) or not 1 <= size <= 50 or page < 1:
            return self._error("isv.INVALID_PARAMETERS")
        with self.lock:
            found = [{**d, "sent_at": at} for d, at in zip(self.delivered, self.sent_at, strict=True)
                     if d["phone"] == phone and at.date() == day and params.get("BizId") in (None, d["biz_id"])]
        dtos = []
        for d in found[(page - 1) * size:page * size]:
            status = 2 if phone in self.undelivered else 1 if phone in self.awaiting else 3
            dto = {"PhoneNum": phone, "SendStatus": status,
                   "ErrCode": {1: "", 2: "MK:0001", 3: "DELIVERED"}[status], "TemplateCode": d["template"],
                   "Content": "【促销通】…", "SendDate": d["sent_at"].strftime("%Y-%m-%d %H:%M:%S"),
                   "ReceiveDate": "" if status == 1 else (d["sent_at"] + timedelta(seconds=3)).strftime("%Y-%m-%d %H:%M:%S")}
            if d["out_id"]:
                dto["OutId"] = d["out_id"]
            dtos.append(dto)
        return json_response({"Code": "OK", "Message": "OK", "RequestId": f"req-{next(self._ids)}",
                              "TotalCount": len(found), "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}})
