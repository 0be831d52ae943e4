"""Fake WeCom API: gettoken, message/send, webhook/send (robot) and
externalcontact/add_msg_template, with the documented errcodes: 40001/40013 on
a wrong secret or corp id, 40014 for an unknown token, 42001 for an expired one,
41011/40008/44004 for malformed messages, invaliduser / 81013 for recipients,
93000 for a wrong robot key, injectable 45009/-1."""

from __future__ import annotations

import itertools
import json
import threading
import time

from werkzeug.wrappers import Request, Response

from .base import FakeProvider, json_response


class FakeWecom(FakeProvider):
    def __init__(self, corp_id: str = "ww-test-corp", secret: str = "wecom-test-secret", agent_id: int = 1000002,
                 robot_key: str = "robot-test-key") -> None:
        super().__init__()
        self.corp_id, self.secret, self.agent_id, self.robot_key = corp_id, secret, agent_id, robot_key
        self.users = {"zhangsan", "lisi", "wangwu"} | {f"user{i}" for i in range(50)}
        self.customers = {"wmCustomer1", "wmCustomer2"}
        self.tokens: set[str] = set()
        self.expired: set[str] = set()
        self.gettoken_calls = 0
        self.gettoken_delay = 0.0
        self.errcodes: list[int] = []          # forced answers for the next message/robot calls
        self.expire_after: int | None = None   # expire every token after this many more sends
        self.sent: list[dict] = []
        #: messages WeCom accepts (errcode 0) but never delivers: more than 30
        #: a minute to one member from one app (doc 90454: "excess silently dropped")
        self.dropped: list[dict] = []
        self.member_hits: dict[str, list[float]] = {}
        self.robot_sent: list[tuple[float, dict]] = []
        self.tasks: list[dict] = []
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()

    def expire_tokens(self) -> None:
        with self.lock:
            self.expired |= self.tokens
            self.tokens.clear()

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/cgi-bin/gettoken" and request.method == "GET":
            return self._gettoken(request)
        if path == "/cgi-bin/webhook/send" and request.method == "POST":
            return self._robot(request)
        if path in ("/cgi-bin/message/send", "/cgi-bin/externalcontact/add_msg_template"):
            token = request.args.get("access_token", "")
            if token in self.expired:
                return json_response({"errcode": 42001, "errmsg": "access_token expired"})
            if token not in self.tokens:
                return json_response({"errcode": 40014, "errmsg": "invalid access_token"})
            try:
                body = json.loads(request.get_data())
            except ValueError:
                return json_response({"errcode": 47001, "errmsg": "data format error"})
            if self.errcodes:
                return json_response({"errcode": self.errcodes.pop(0), "errmsg": "forced"})
            if path.endswith("message/send"):
                response = self._message(body)
            else:
                response = self._task(body)
            with self._send_lock:
                if self.expire_after is not None:
                    self.expire_after -= 1
                    if self.expire_after <= 0:
                        self.expire_after = None
                        self.expire_tokens()
            return response
        return json_response({"errcode": 404, "errmsg": "not found"}, 404)

    def _gettoken(self, request: Request) -> Response:
        with self.lock:
            self.gettoken_calls += 1
        if self.gettoken_delay:
            time.sleep(self.gettoken_delay)
        if request.args.get("corpid") != self.corp_id:
            return json_response({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.args.get("corpsecret") != self.secret:
            return json_response({"errcode": 40001, "errmsg": "invalid credential"})
        token = f"token-{next(self._ids)}-" + "x" * 40
        with self.lock:
            self.tokens.add(token)
        return json_response({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})

    def _message(self, body: dict) -> Response:
        if body.get("agentid") != self.agent_id:
            return json_response({"errcode": 41011, "errmsg": "missing agentid"})
        msgtype = body.get("msgtype")
        if msgtype not in ("text", "markdown", "textcard") or msgtype not in body:
            return json_response({"errcode": 40008, "errmsg": "invalid message type"})
        if msgtype == "textcard":
            card = body["textcard"]
            if not card.get("title") or not card.get("description") or not card.get("url"):
                return json_response({"errcode": 44004, "errmsg": "textcard fields missing"})
        elif not body[msgtype].get("content"):
            return json_response({"errcode": 44004, "errmsg": "empty content"})
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if u not in self.users]
        if users and len(invalid) == len(users):
            return json_response({"errcode": 81013, "errmsg": "user & party & tag all invalid"})
        msgid = f"msg-{next(self._ids)}"
        now = self.now()
        with self.lock:
            over = False
            for user in users:
                hits = [t for t in self.member_hits.get(user, []) if t > now - 60]
                over = over or len(hits) >= 30
                self.member_hits[user] = [*hits, now]
            (self.dropped if over else self.sent).append(body)
        return json_response({"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(u.lower() for u in invalid),
                              "invalidparty": "", "invalidtag": "", "unlicenseduser": "", "msgid": msgid})

    def _task(self, body: dict) -> Response:
        ids = body.get("external_userid") or []
        fail = [i for i in ids if i not in self.customers]
        msgid = f"task-{next(self._ids)}"
        with self.lock:
            self.tasks.append(body)
        return json_response({"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid})

    def _robot(self, request: Request) -> Response:
        if request.args.get("key") != self.robot_key:
            return json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        if self.errcodes:
            return json_response({"errcode": self.errcodes.pop(0), "errmsg": "forced"})
        now = self.now()
        with self.lock:
            recent = [t for t, _ in self.robot_sent if t > now - 60]
            if len(recent) >= 20:
                return json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
            self.robot_sent.append((now, json.loads(request.get_data())))
        return json_response({"errcode": 0, "errmsg": "ok"})
