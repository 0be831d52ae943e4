"""WeCom app, robot and external-contact connectors against the fake API."""

from __future__ import annotations

import threading

import pytest
from connector_support import make_spec

from connectors.registry import load_connector
from connectors.wecom import (
    WecomAppConnector,
    WecomExternalConnector,
    WecomRobotConnector,
    canonical_json,
)
from engine.ports import ConfigurationError, Outcome, OutgoingMessage

ENV = {"WECOM_SECRET": "wecom-test-secret", "ROBOT_KEY": "robot-test-key"}


def app(fake, clock, session, env=ENV, **settings) -> WecomAppConnector:
    spec = make_spec("wecom_app", "wecom", {"base_url": fake.url, "corp_id": "ww-test-corp", "agent_id": 1000002,
                                            "read_timeout": 0.5, **settings}, {"corp_secret": "WECOM_SECRET"})
    return load_connector(spec, env=env, session=session, clock=clock)  # type: ignore[return-value]


def msg(i: int, to: str = "zhangsan", body: str = "活动已批准", **options) -> OutgoingMessage:
    return OutgoingMessage(id=f"m{i}", channel="wecom", recipient=to, body=body, subject="活动审批", options=options)


def test_text_markdown_and_textcard_with_a_task_link(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session, task_url="https://promo.example.com/inbox/{task_id}")
    results = c.send_batch([msg(1), msg(2, msgtype="markdown", body="**批准**"),
                            msg(3, msgtype="textcard", task_id=42, btntxt="去审批")])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 3
    assert all(r.provider_id.startswith("msg-") for r in results)
    card = fake_wecom.sent[2]["textcard"]
    assert card == {"title": "活动审批", "description": "活动已批准",
                    "url": "https://promo.example.com/inbox/42", "btntxt": "去审批"}
    assert fake_wecom.sent[0]["enable_duplicate_check"] == 1
    assert fake_wecom.gettoken_calls == 1  # cached


def test_resend_is_byte_identical_for_the_duplicate_check(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    c.send_batch([msg(1)])
    c.send_batch([msg(1)])
    bodies = [r.get_data() for r in fake_wecom.requests if r.path.endswith("message/send")]
    assert bodies[0] == bodies[1] == canonical_json(c.build_body(msg(1)))  # type: ignore[arg-type]


def test_invalid_user_is_permanent_for_that_recipient(fake_wecom, clock, session) -> None:
    results = app(fake_wecom, clock, session).send_batch([msg(1, to="ghost"), msg(2, to="lisi|ghost")])
    assert results[0].outcome is Outcome.PERMANENT and results[0].code == "81013"
    assert results[1].outcome is Outcome.ACCEPTED and "1 invalid" in (results[1].detail or "")


def test_textcard_without_url_is_permanent_without_a_call(fake_wecom, clock, session) -> None:
    [result] = app(fake_wecom, clock, session).send_batch([msg(1, msgtype="textcard")])
    assert result.outcome is Outcome.PERMANENT and result.code == "missing_url"
    assert fake_wecom.requests == []


def test_expired_token_mid_batch_refreshes_once_and_retries(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    fake_wecom.expire_after = 2
    results = c.send_batch([msg(i, to=f"user{i}") for i in range(5)])
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 5
    assert fake_wecom.gettoken_calls == 2
    assert len(fake_wecom.sent) == 5


def test_invalid_token_40014_also_refreshes(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    c.send_batch([msg(1)])
    with fake_wecom.lock:
        fake_wecom.tokens.clear()  # revoked early: unknown token → 40014
    assert c.send_batch([msg(2, to="lisi")])[0].outcome is Outcome.ACCEPTED
    assert fake_wecom.gettoken_calls == 2


def test_token_refresh_is_single_flight_under_20_threads(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    c.send_batch([msg(0)])
    assert fake_wecom.gettoken_calls == 1
    fake_wecom.expire_tokens()
    fake_wecom.gettoken_delay = 0.2  # keep the refresh in flight while the others arrive
    barrier = threading.Barrier(20)
    results: list = []

    def worker(i: int) -> None:
        barrier.wait()
        results.extend(c.send_batch([msg(100 + i, to=f"user{i}")]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 20
    assert fake_wecom.gettoken_calls == 2  # exactly one refresh for 20 threads


def test_cold_start_fetches_one_token_for_20_threads(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    fake_wecom.gettoken_delay = 0.2
    threads = [threading.Thread(target=c.send_batch, args=([msg(i, to=f"user{i}")],)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_wecom.gettoken_calls == 1 and len(fake_wecom.sent) == 20


def test_bad_secret_is_a_configuration_error_without_a_loop(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session, env={"WECOM_SECRET": "wrong-secret"})
    for _ in range(3):
        with pytest.raises(ConfigurationError) as info:
            c.send_batch([msg(1), msg(2)])
        assert info.value.code == "40001" and "wrong-secret" not in str(info.value)
    assert fake_wecom.gettoken_calls == 1
    assert not any(r.path.endswith("message/send") for r in fake_wecom.requests)


def test_wrong_corp_id_is_a_configuration_error(fake_wecom, clock, session) -> None:
    with pytest.raises(ConfigurationError, match="40013"):
        app(fake_wecom, clock, session, corp_id="ww-other").send_batch([msg(1)])


def test_frequency_limit_and_busy_are_retryable(fake_wecom, clock, session) -> None:
    fake_wecom.errcodes.extend([45009, -1])
    c = app(fake_wecom, clock, session)
    first, second = c.send_batch([msg(1), msg(2, to="lisi")])
    assert first.outcome is Outcome.RETRYABLE and first.retry_after == 60
    assert second.outcome is Outcome.RETRYABLE and second.code == "-1"


def test_more_than_30_a_minute_to_one_member_is_throttled_before_sending(fake_wecom, clock, session) -> None:
    c = app(fake_wecom, clock, session)
    results = c.send_batch([msg(i) for i in range(35)] + [msg(99, to="lisi")])
    outcomes = [r.outcome for r in results]
    assert outcomes[:30] == [Outcome.ACCEPTED] * 30
    assert all(r.outcome is Outcome.RETRYABLE and r.code == "throttled" and 0 < r.retry_after <= 60
               for r in results[30:35])
    assert results[35].outcome is Outcome.ACCEPTED  # another member is not held up
    assert len(fake_wecom.sent) == 31
    clock.advance(61)
    assert c.send_batch([msg(200)])[0].outcome is Outcome.ACCEPTED


@pytest.mark.parametrize("fault, outcome", [("timeout", Outcome.UNKNOWN), ("503", Outcome.RETRYABLE),
                                            ("malformed", Outcome.UNKNOWN), ("reset", Outcome.UNKNOWN)])
def test_transport_faults(fake_wecom, clock, session, fault, outcome) -> None:
    c = app(fake_wecom, clock, session)
    c.send_batch([msg(0)])
    fake_wecom.inject(fault)
    assert c.send_batch([msg(1, to="lisi")])[0].outcome is outcome


# ------------------------------------------------------------ robot

def robot(fake, clock, session, key_env="ROBOT_KEY", env=ENV) -> WecomRobotConnector:
    spec = make_spec("wecom_robot", "wecom", {"base_url": fake.url}, {"webhook_key": key_env})
    return load_connector(spec, env=env, session=session, clock=clock)  # type: ignore[return-value]


def test_robot_sends_at_most_20_a_minute_and_throttles_before_sending(fake_wecom, clock, session) -> None:
    c = robot(fake_wecom, clock, session)
    results = c.send_batch([msg(i, to="group", body=f"第{i}条") for i in range(25)])
    assert [r.outcome for r in results[:20]] == [Outcome.ACCEPTED] * 20
    assert all(r.outcome is Outcome.RETRYABLE and r.code == "throttled" for r in results[20:])
    assert len(fake_wecom.robot_sent) == 20
    assert len([r for r in fake_wecom.requests if r.path.endswith("webhook/send")]) == 20  # never the 21st
    clock.advance(60)
    assert c.send_batch([msg(30, body="again", msgtype="markdown")])[0].outcome is Outcome.ACCEPTED
    assert fake_wecom.robot_sent[-1][1] == {"msgtype": "markdown", "markdown": {"content": "again"}}


def test_robot_wrong_key_is_a_configuration_error(fake_wecom, clock, session) -> None:
    with pytest.raises(ConfigurationError, match="93000"):
        robot(fake_wecom, clock, session, env={"ROBOT_KEY": "bad-key"}).send_batch([msg(1)])


def test_robot_server_side_limit_is_retryable(fake_wecom, clock, session) -> None:
    fake_wecom.errcodes.append(45009)
    [result] = robot(fake_wecom, clock, session).send_batch([msg(1)])
    assert result.outcome is Outcome.RETRYABLE and result.retry_after == 60


# ------------------------------------------------------------ external contact

def test_external_contact_creates_a_task(fake_wecom, clock, session) -> None:
    spec = make_spec("wecom_external", "wecom", {"base_url": fake_wecom.url, "corp_id": "ww-test-corp",
                                                 "sender": "zhangsan"}, {"corp_secret": "WECOM_SECRET"})
    c = load_connector(spec, env=ENV, session=session, clock=clock)
    assert isinstance(c, WecomExternalConnector)
    ok, failed = c.send_batch([msg(1, to="wmCustomer1"), msg(2, to="wmStranger")])
    assert ok.outcome is Outcome.ACCEPTED and ok.provider_id.startswith("task-")
    assert failed.outcome is Outcome.PERMANENT
    assert fake_wecom.tasks[0] == {"chat_type": "single", "external_userid": ["wmCustomer1"],
                                   "sender": "zhangsan", "text": {"content": "活动已批准"}}
