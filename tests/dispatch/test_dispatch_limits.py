"""Rate limits in the dispatcher, on a fake clock (``now`` is passed in):
throttled rows wait — due again when the limit allows — are never dropped and
never use up an attempt."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

from connectors.memory import MemoryConnector
from engine.definitions.specs import ConnectorSpec
from engine.dispatch import Dispatcher
from engine.dispatch_limits import RatePolicy, WindowCounter, policy_for, recipient_waits
from engine.ports import Outcome
from engine.storage.times import to_db_time

from .support import NOW, add_rows, rows, statuses


def typed(type_: str, cid: str = "mem", **extra) -> MemoryConnector:
    """A memory connector that declares a provider's type, so the provider's
    default limits apply."""
    spec = ConnectorSpec(id=cid, type=type_, channel="wecom", settings={"max_batch": 100}, **extra)
    return MemoryConnector(spec, {})


def make(session_factory, *connectors, worker="w1", **kw):
    kw.setdefault("rng", random.Random(3))
    return Dispatcher(session_factory, {c.id: c for c in connectors}, worker_id=worker, **kw)


def one_recipient(session_factory, n, *, to="zhangsan", prefix="r", delivery_class="transactional", now=NOW):
    add_rows(session_factory, n, prefix=prefix, delivery_class=delivery_class, now=now)
    from sqlalchemy import text
    with session_factory() as s:
        s.execute(text("UPDATE outbox SET recipient = :to WHERE idempotency_key LIKE :p"), {"to": to, "p": f"{prefix}-%"})
        s.commit()


def test_policy_defaults_and_overrides():
    assert policy_for(ConnectorSpec(id="a", type="wecom_app", channel="wecom")).per_recipient == ((30, 60.0),
                                                                                                 (1000, 3600.0))
    assert policy_for(ConnectorSpec(id="r", type="wecom_robot", channel="wecom")).per_minute == 20
    tencent = policy_for(ConnectorSpec(id="t", type="tencent_sms", channel="sms"))
    assert tencent.window == (time(8), time(22)) and tencent.per_second == 3000
    custom = policy_for(ConnectorSpec(id="t", type="tencent_sms", channel="sms", per_second=50,
                                      per_recipient_per_minute=1, send_window=(time(9), time(21))))
    assert custom.per_second == 50 and custom.per_recipient == ((1, 60.0),) and custom.window == (time(9), time(21))
    assert policy_for(ConnectorSpec(id="m", type="memory", channel="sms")) == RatePolicy()


def test_window_counter_and_ranking():
    counter = WindowCounter([(3, 1.0), (5, 60.0)])
    assert counter.available(100.0) == 3
    counter.take(3, 100.0)
    assert counter.available(100.5) == 0 and counter.wait(100.5) == 0.5
    assert counter.available(101.0) == 2  # per-minute budget left: 5 - 3
    # another dispatcher's two sends hold the first slots; ours rank after them
    waits = recipient_waits([{"id": 10, "recipient": "u"}, {"id": 11, "recipient": "u"}],
                            {"u": [(50.0, 1), (55.0, 2), (100.0, 10), (100.0, 11)]}, [(3, 60.0)], 100.0)
    assert waits == {11: 10.0}  # the slot of the send at 50 s frees at 110 s


def test_wecom_app_30_a_minute_per_member_throttled_not_attempted(session_factory):
    app = typed("wecom_app", max_attempts=2)
    one_recipient(session_factory, 40)
    d = make(session_factory, app)
    report = d.run_until_idle(NOW)
    assert (report.sent, report.throttled) == (30, 10)
    waiting = [r for r in rows(session_factory) if r["status"] != "sent"]
    assert len(waiting) == 10
    assert all(r["status"] == "queued" and r["attempts"] == 0 and r["claimed_at"] is None for r in waiting)
    assert all(r["next_attempt_at"] >= to_db_time(NOW + timedelta(seconds=59)) for r in waiting)
    # a minute later the rest goes; never more than 30 in any minute
    assert d.run_until_idle(NOW + timedelta(seconds=30)).sent == 0
    assert d.run_until_idle(NOW + timedelta(seconds=60)).sent == 10
    assert statuses(session_factory) == {"sent": 40}
    other = typed("wecom_app")
    one_recipient(session_factory, 5, to="lisi", prefix="l", now=NOW + timedelta(seconds=60))
    assert make(session_factory, other).run_until_idle(NOW + timedelta(seconds=60)).sent == 5  # other member: no wait


def test_per_member_limit_holds_across_two_dispatchers(session_factory):
    one_recipient(session_factory, 50)
    first, second = make(session_factory, typed("wecom_app"), worker="w1"), make(session_factory,
                                                                                typed("wecom_app"), worker="w2")
    first.run_once(NOW, batch=20)
    second.run_once(NOW, batch=20)
    first.run_once(NOW, batch=20)
    second.run_once(NOW, batch=20)
    sent = sum(1 for r in rows(session_factory) if r["status"] == "sent")
    assert sent == 30  # counted in the database, not per process
    first.run_until_idle(NOW + timedelta(seconds=61))
    assert statuses(session_factory) == {"sent": 50}


def test_robot_20_a_minute(session_factory):
    robot = typed("wecom_robot")
    add_rows(session_factory, 25)
    d = make(session_factory, robot)
    assert d.run_until_idle(NOW).sent == 20
    assert statuses(session_factory) == {"sent": 20, "queued": 5}  # not even claimed: no budget left
    assert d.run_until_idle(NOW + timedelta(seconds=59)).sent == 0
    assert d.run_until_idle(NOW + timedelta(seconds=60)).sent == 5


def test_connector_qps_from_the_definition(session_factory):
    sms = MemoryConnector(ConnectorSpec(id="mem", type="aliyun_sms", channel="sms", per_second=10,
                                        settings={"max_batch": 100}), {})
    add_rows(session_factory, 25)
    d = make(session_factory, sms)
    sent = [d.run_until_idle(NOW + timedelta(seconds=s)).sent for s in range(3)]
    assert sent == [10, 10, 5]
    assert all(r["attempts"] == 1 for r in rows(session_factory))


def test_tencent_marketing_only_0800_to_2200_deferred_not_dropped(session_factory):
    tencent = MemoryConnector(ConnectorSpec(id="mem", type="tencent_sms", channel="sms"), {})
    late = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    add_rows(session_factory, 3, now=late)
    add_rows(session_factory, 2, now=late, delivery_class="transactional", prefix="t")
    d = make(session_factory, tencent)
    report = d.run_until_idle(late)
    assert (report.sent, report.deferred) == (2, 3)
    held = [r for r in rows(session_factory) if r["status"] == "queued"]
    assert len(held) == 3 and all(r["attempts"] == 0 for r in held)
    assert {r["next_attempt_at"] for r in held} == {datetime(2026, 3, 3, 0, 0)}  # 08:00 Shanghai
    assert d.run_until_idle(datetime(2026, 3, 3, 0, 0, tzinfo=UTC)).sent == 3


def test_provider_rate_limit_answers_never_dead_letter(session_factory):
    mem = MemoryConnector(ConnectorSpec(id="mem", type="memory", channel="sms", max_attempts=2), {})
    add_rows(session_factory, 1)
    d = make(session_factory, mem)
    at = NOW
    for _ in range(5):  # far more than max_attempts
        mem.fail_next(Outcome.RETRYABLE, code="45009", retry_after=60)
        report = d.run_once(at)
        assert report.throttled == 1 and report.dead == 0
        (row,) = rows(session_factory)
        assert row["status"] == "queued" and row["attempts"] == 0
        assert row["next_attempt_at"] == to_db_time(at + timedelta(seconds=60))
        at += timedelta(seconds=60)
    assert d.run_once(at).sent == 1
    (row,) = rows(session_factory)
    assert row["attempts"] == 1 and len(mem.sent) == 1


def test_wecom_member_lists_count_for_every_member(session_factory):
    """``zhangsan|lisi`` is a message to each: it uses a slot of both."""
    one_recipient(session_factory, 20, to="zhangsan|lisi", prefix="both")
    one_recipient(session_factory, 15, to="lisi", prefix="li")
    one_recipient(session_factory, 5, to="wang_5%", prefix="odd")  # LIKE wildcards are literal
    d = make(session_factory, typed("wecom_app"))
    d.run_until_idle(NOW)
    sent = [r for r in rows(session_factory) if r["status"] == "sent"]
    to_lisi = [r for r in sent if "lisi" in r["recipient"].split("|")]
    assert len(to_lisi) == 30 and len(sent) == 35
    assert d.run_until_idle(NOW + timedelta(seconds=60)).sent == 5
