"""The dispatcher's rate limits against the fake WeCom, which behaves like the
real one: more than 30 app messages a minute to one member are accepted
(errcode 0) and silently dropped; a robot answers 45009 past 20 a minute.
The dispatcher and the connector read the same fake clock."""

from __future__ import annotations

import random

from connector_support import make_spec
from sqlalchemy import insert, select

from connectors.registry import load_connector
from engine.dispatch import Dispatcher
from engine.storage.database import transaction
from engine.storage.models import OutboxMessage
from engine.storage.times import to_db_time

ENV = {"WECOM_SECRET": "wecom-test-secret", "ROBOT_KEY": "robot-test-key"}


def _rows(session_factory, clock, n, connector, to="zhangsan"):
    stamp = to_db_time(clock())
    with transaction(session_factory) as s:
        s.execute(insert(OutboxMessage.__table__), [{
            "channel": "wecom", "connector": connector, "recipient": to, "body": f"审批提醒 {i}", "payload": {},
            "idempotency_key": f"{connector}-{to}-{i}", "delivery_class": "transactional", "status": "queued",
            "attempts": 0, "next_attempt_at": stamp, "created_at": stamp} for i in range(n)])


def _statuses(session_factory):
    with session_factory() as s:
        return sorted((r.status, r.attempts) for r in s.execute(select(OutboxMessage.status, OutboxMessage.attempts)))


def test_app_messages_to_one_member_are_paced_not_dropped(session_factory, fake_wecom, clock, session):
    spec = make_spec("wecom_app", "wecom", {"base_url": fake_wecom.url, "corp_id": "ww-test-corp",
                                            "agent_id": 1000002}, {"corp_secret": "WECOM_SECRET"})
    app = load_connector(spec, env=ENV, session=session, clock=clock)
    _rows(session_factory, clock, 45, spec.id)
    _rows(session_factory, clock, 3, spec.id, to="lisi")
    d = Dispatcher(session_factory, {spec.id: app}, worker_id="w", rng=random.Random(2))
    first = d.run_until_idle(clock())
    assert (first.sent, first.throttled) == (33, 15)
    assert len(fake_wecom.sent) == 33 and fake_wecom.dropped == []
    for _ in range(3):
        clock.advance(30)
        d.run_until_idle(clock())
    assert len(fake_wecom.sent) == 48 and fake_wecom.dropped == []
    assert _statuses(session_factory) == [("sent", 1)] * 48  # throttling never counted as an attempt


def test_without_the_dispatchers_limit_wecom_would_drop(fake_wecom, clock, session):
    """The fake is strict: the 31st message in a minute is "ok" and lost."""
    import requests
    token = requests.get(f"{fake_wecom.url}/cgi-bin/gettoken",
                         params={"corpid": "ww-test-corp", "corpsecret": "wecom-test-secret"}).json()["access_token"]
    for i in range(31):
        answer = requests.post(f"{fake_wecom.url}/cgi-bin/message/send", params={"access_token": token},
                               json={"touser": "zhangsan", "msgtype": "text", "agentid": 1000002,
                                     "text": {"content": f"x{i}"}}).json()
        assert answer["errcode"] == 0
    assert len(fake_wecom.sent) == 30 and len(fake_wecom.dropped) == 1


def test_robot_twenty_a_minute_without_45009(session_factory, fake_wecom, clock, session):
    spec = make_spec("wecom_robot", "wecom", {"base_url": fake_wecom.url}, {"webhook_key": "ROBOT_KEY"})
    robot = load_connector(spec, env=ENV, session=session, clock=clock)
    _rows(session_factory, clock, 25, spec.id, to="group")
    d = Dispatcher(session_factory, {spec.id: robot}, worker_id="w", rng=random.Random(2))
    assert d.run_until_idle(clock()).sent == 20
    clock.advance(59)
    assert d.run_until_idle(clock()).sent == 0
    clock.advance(1)
    assert d.run_until_idle(clock()).sent == 5
    assert len(fake_wecom.robot_sent) == 25
    assert _statuses(session_factory) == [("sent", 1)] * 25
