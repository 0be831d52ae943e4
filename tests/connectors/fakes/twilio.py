"""Fake Twilio Messages API: Basic auth, form fields, E.164, From of the
account, STOP list, rate limit (429 / 20429), documented error bodies."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from email.utils import format_datetime

from werkzeug.wrappers import Request, Response

from .base import FakeProvider, json_response

E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class FakeTwilio(FakeProvider):
    def __init__(self, sid: str = "ACtest0000000000000000000000000000", token: str = "twilio-test-token",
                 from_number: str = "+15005550006") -> None:
        super().__init__()
        self.sid, self.token, self.from_number = sid, token, from_number
        self.stopped: set[str] = set()
        self.unroutable: set[str] = set()
        self.rate_limited = 0
        self.delivered: list[dict] = []
        self.created: list[tuple[datetime, str | None]] = []   # (date_created, From) of each delivered entry
        self._ids = itertools.count(1)

    def _error(self, status: int, code: int, message: str) -> Response:
        return json_response({"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                              "status": status}, status)

    def handle(self, request: Request) -> Response:
        if request.path != f"/2010-04-01/Accounts/{self.sid}/Messages.json" or request.method not in ("POST", "GET"):
            return self._error(404, 20404, "The requested resource was not found")
        auth = request.authorization
        if auth is None or auth.username != self.sid or auth.password != self.token:
            return self._error(401, 20003, "Authenticate")
        if request.method == "GET":
            return self._list(request)
        if self.rate_limited:
            self.rate_limited -= 1
            return self._error(429, 20429, "Too Many Requests")
        form = request.form
        to = form.get("To", "")
        if not form.get("Body") and not form.get("MediaUrl"):
            return self._error(400, 21602, "Message body is required.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if form.get("From") and form["From"] != self.from_number:
            return self._error(400, 21606, "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination/account")
        if not E164.match(to):
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in self.stopped:
            return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
        if to in self.unroutable:
            return self._error(400, 21612, "The 'To' phone number is not currently reachable via SMS")
        sid = f"SM{next(self._ids):032d}"
        with self.lock:
            self.delivered.append({"sid": sid, "to": to, "body": form["Body"]})
            self.created.append((datetime.fromtimestamp(self.now(), UTC), form.get("From")))
        return json_response({"sid": sid, "status": "queued", "to": to, "from": form.get("From"),
                              "body": form["Body"], "error_code": None}, 201)

    def _list(self, request: Request) -> Response:
        """GET Messages.json with the documented filters To, From, DateSent
        (YYYY-MM-DD, UTC) and PageSize; newest first, RFC 2822 dates."""
        args = request.args
        with self.lock:
            found = [{**d, "created": at, "from": sender} for d, (at, sender) in zip(self.delivered, self.created, strict=True)
                     if args.get("To") in (None, d["to"]) and args.get("From") in (None, sender)
                     and args.get("DateSent") in (None, at.strftime("%Y-%m-%d"))]
        size = int(args.get("PageSize", 50))
        found = sorted(found, key=lambda d: d["created"], reverse=True)[:size]
        messages = [{"sid": d["sid"], "to": d["to"], "from": d["from"], "body": d["body"], "status": "delivered",
                     "date_created": format_datetime(d["created"]), "date_sent": format_datetime(d["created"]),
                     "error_code": None, "direction": "outbound-api"} for d in found]
        return json_response({"messages": messages, "page": 0, "page_size": size, "next_page_uri": None,
                              "uri": request.full_path})
