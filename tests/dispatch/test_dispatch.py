"""Dispatcher behaviour on both databases, with the in-process memory connector."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import insert, text

from engine.dispatch import Backoff, Dispatcher
from engine.ports import Outcome
from engine.storage.database import transaction
from engine.storage.models import Consent, Customer
from engine.storage.times import to_db_time

from .support import NOW, add_rows, events, memory, rows, statuses


def make(session_factory, *connectors, **kw):
    kw.setdefault("rng", random.Random(7))
    return Dispatcher(session_factory, {c.id: c for c in connectors}, worker_id="w1", **kw)


def test_success_path(session_factory):
    mem = memory(max_batch=7)
    add_rows(session_factory, 20)
    report = make(session_factory, mem).run_once(NOW)
    assert (report.claimed, report.sent) == (20, 20)
    got = rows(session_factory)
    assert {r["status"] for r in got} == {"sent"}
    assert all(r["provider_id"].startswith("mem-") and r["attempts"] == 1 and r["claimed_by"] is None for r in got)
    assert sorted(s.message.idempotency_key for s in mem.sent) == sorted(r["idempotency_key"] for r in got)
    assert make(session_factory, mem).run_once(NOW).claimed == 0


def test_not_due_and_other_connectors_untouched(session_factory):
    add_rows(session_factory, 3, now=NOW + timedelta(minutes=1))
    add_rows(session_factory, 2, connector="other", prefix="o")
    report = make(session_factory, memory()).run_once(NOW)
    assert report.claimed == 0
    assert statuses(session_factory) == {"queued": 5}


def test_retry_with_backoff_then_success(session_factory):
    mem = memory()
    add_rows(session_factory, 1)
    d = make(session_factory, mem, backoff=Backoff(base=10, cap=1000, jitter=0.5))
    mem.fail_next(Outcome.RETRYABLE, code="http_503")
    assert d.run_once(NOW).retried == 1
    (row,) = rows(session_factory)
    assert row["status"] == "retry" and row["attempts"] == 1 and "http_503" in row["last_error"]
    first_wait = row["next_attempt_at"] - to_db_time(NOW)
    assert timedelta(seconds=5) <= first_wait <= timedelta(seconds=10)
    assert d.run_once(NOW + timedelta(seconds=4)).claimed == 0  # not before the backoff
    later = NOW + first_wait
    mem.fail_next(Outcome.RETRYABLE, code="http_503")
    d.run_once(later)
    (row,) = rows(session_factory)
    second_wait = row["next_attempt_at"] - to_db_time(later)
    assert timedelta(seconds=10) <= second_wait <= timedelta(seconds=20)  # doubled
    d.run_once(later + second_wait)
    (row,) = rows(session_factory)
    assert row["status"] == "sent" and row["attempts"] == 3 and len(mem.sent) == 1


def test_retry_after_is_honoured(session_factory):
    mem = memory()
    add_rows(session_factory, 1)
    mem.fail_next(Outcome.RETRYABLE, code="45009", retry_after=600)
    make(session_factory, mem).run_once(NOW)
    (row,) = rows(session_factory)
    assert row["next_attempt_at"] - to_db_time(NOW) >= timedelta(seconds=600)


def test_dead_letter_after_the_limit_and_resend(session_factory):
    mem = memory(max_attempts=3)
    add_rows(session_factory, 1)
    d = make(session_factory, mem, backoff=Backoff(base=1, cap=1))
    mem.fail_next(Outcome.RETRYABLE, count=3)
    at = NOW
    for _ in range(3):
        d.run_once(at)
        at += timedelta(seconds=5)
    (row,) = rows(session_factory)
    assert row["status"] == "dead" and row["attempts"] == 3 and not mem.sent
    assert d.run_once(at + timedelta(days=1)).claimed == 0  # dead letters stay put
    assert d.resend(row["id"], at) == "queued"
    assert d.resend(row["id"], at) == "not_resendable"  # no longer dead
    (row,) = rows(session_factory)
    assert row["status"] == "queued" and row["attempts"] == 0
    d.run_once(at)
    (row,) = rows(session_factory)
    assert row["status"] == "sent" and len(mem.sent) == 1


def test_permanent_failure(session_factory):
    mem = memory()
    add_rows(session_factory, 2)
    mem.fail_next(Outcome.PERMANENT, code="isv.MOBILE_NUMBER_ILLEGAL")
    report = make(session_factory, mem).run_once(NOW)
    assert (report.failed, report.sent) == (1, 1)
    first, second = rows(session_factory)
    assert first["status"] == "failed" and "isv.MOBILE_NUMBER_ILLEGAL" in first["last_error"]
    assert second["status"] == "sent"
    assert make(session_factory, mem).run_once(NOW + timedelta(days=1)).claimed == 0


def test_unknown_marketing_not_retried_transactional_retried(session_factory):
    mem = memory()
    add_rows(session_factory, 1, delivery_class="marketing", prefix="m")
    add_rows(session_factory, 1, delivery_class="transactional", prefix="t")
    d = make(session_factory, mem, backoff=Backoff(base=1, cap=1))
    mem.fail_next(Outcome.UNKNOWN, code="timeout", count=2)
    report = d.run_once(NOW)
    assert (report.unknown, report.retried) == (1, 1)
    m, t = rows(session_factory)
    assert m["status"] == "unknown" and t["status"] == "retry"
    d.run_once(NOW + timedelta(seconds=5))
    m, t = rows(session_factory)
    assert m["status"] == "unknown" and t["status"] == "sent"
    keys = [s.message.idempotency_key for s in mem.sent]
    assert keys.count("m-0") == 1 and keys.count("t-0") == 2  # at most once vs at least once


def test_configuration_error_stops_connector_and_alerts(session_factory):
    bad, good = memory("bad", max_batch=2), memory("good")
    add_rows(session_factory, 5, connector="bad", prefix="b")
    add_rows(session_factory, 3, connector="good", prefix="g")
    bad.fail_configuration("secret rejected")
    d = make(session_factory, bad, good)
    report = d.run_once(NOW)
    assert report.misconfigured == ["bad"] and report.sent == 3
    got = {r["idempotency_key"]: r for r in rows(session_factory)}
    for i in range(5):
        r = got[f"b-{i}"]
        assert r["status"] == "retry" and r["attempts"] == 0
        assert r["next_attempt_at"] - to_db_time(NOW) >= timedelta(minutes=10)
    assert [e.subject_id for e in events(session_factory, "connector.misconfigured")] == ["bad"]
    bad.fail_configuration(None)
    assert d.run_once(NOW + timedelta(minutes=20)).sent == 5


def test_reaper(session_factory):
    add_rows(session_factory, 2, delivery_class="marketing", prefix="m")
    add_rows(session_factory, 2, delivery_class="transactional", prefix="t")
    with transaction(session_factory) as s:  # a worker claimed them and died
        s.execute(text("UPDATE outbox SET status='sending', claimed_by='dead', claimed_at=:at, attempts=1"),
                  {"at": to_db_time(NOW)})
        s.execute(text("UPDATE outbox SET claimed_at=:at WHERE idempotency_key IN ('m-1','t-1')"),
                  {"at": to_db_time(NOW + timedelta(minutes=9))})
    mem = memory()
    d = make(session_factory, mem)
    assert d.reap(NOW + timedelta(minutes=10)) == {"unknown": 1, "retry": 1}
    got = {r["idempotency_key"]: r["status"] for r in rows(session_factory)}
    assert got == {"m-0": "unknown", "m-1": "sending", "t-0": "retry", "t-1": "sending"}
    d.run_once(NOW + timedelta(minutes=10))
    assert [s.message.idempotency_key for s in mem.sent] == ["t-0"]


def test_late_write_after_reap_is_fenced(session_factory):
    """A worker that stalls past the reaper cannot overwrite the reaped row."""
    mem = memory()
    add_rows(session_factory, 1, delivery_class="transactional")
    slow = make(session_factory, mem)
    original = mem.send_batch

    def stalled(messages):
        slow.reap(NOW + timedelta(minutes=10))  # the world moved on meanwhile
        make(session_factory, memory("mem")).run_once(NOW + timedelta(minutes=10))  # someone else sent it
        return original(messages)

    mem.send_batch = stalled  # type: ignore[method-assign]
    report = slow.run_once(NOW)
    assert report.lost_claims == 1
    (row,) = rows(session_factory)
    assert row["status"] == "sent" and row["attempts"] == 2


def _customers(session_factory, consents):
    stamp = to_db_time(NOW)
    with transaction(session_factory) as s:
        for cid, granted in consents.items():
            s.execute(insert(Customer.__table__).values(id=cid, name=f"c{cid}", created_at=stamp, updated_at=stamp))
            if granted is not None:
                s.execute(insert(Consent.__table__).values(customer_id=cid, channel="sms", granted=granted,
                                                           updated_at=stamp))


def test_opt_out_rechecked_before_send(session_factory):
    _customers(session_factory, {1: True, 2: True, 3: None})
    add_rows(session_factory, 3, customer_ids=[1, 2, 3], prefix="m")
    add_rows(session_factory, 1, customer_ids=[2], delivery_class="transactional", prefix="t")
    with transaction(session_factory) as s:  # customer 2 replied 退订 after the row was queued
        s.execute(text("UPDATE consents SET granted = :f WHERE customer_id = 2"), {"f": False})
    mem = memory()
    report = make(session_factory, mem).run_once(NOW)
    assert (report.sent, report.skipped) == (2, 2)
    got = {r["idempotency_key"]: r for r in rows(session_factory)}
    assert got["m-0"]["status"] == "sent" and got["t-0"]["status"] == "sent"
    assert got["m-1"]["status"] == "skipped" and "opted_out" in got["m-1"]["last_error"]
    assert got["m-2"]["status"] == "skipped"  # no consent row: never granted
    assert sorted(s.message.idempotency_key for s in mem.sent) == ["m-0", "t-0"]


def test_quiet_hours_defer_never_drop(session_factory):
    mem = memory(send_window=(time(8, 0), time(22, 0)))
    add_rows(session_factory, 2, prefix="m")
    add_rows(session_factory, 1, delivery_class="transactional", prefix="t")
    night = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
    d = make(session_factory, mem)
    report = d.run_once(night)
    assert report.deferred == 2 and report.sent == 1
    got = {r["idempotency_key"]: r for r in rows(session_factory)}
    assert got["m-0"]["status"] == "queued"
    assert got["m-0"]["next_attempt_at"] == datetime(2026, 3, 3, 0, 0)  # 08:00 Shanghai, naive UTC
    assert d.run_once(datetime(2026, 3, 2, 23, 59, tzinfo=UTC)).claimed == 0
    assert d.run_once(datetime(2026, 3, 3, 0, 0, tzinfo=UTC)).sent == 2


def test_bad_payload_fails_only_that_row(session_factory):
    mem = memory()
    add_rows(session_factory, 2)
    with transaction(session_factory) as s:
        s.execute(text("UPDATE outbox SET payload = :p WHERE idempotency_key = 'k-0'"), {"p": '"not an object"'})
    report = make(session_factory, mem).run_once(NOW)
    assert (report.failed, report.sent) == (1, 1)


def test_connector_crash_is_unknown_for_marketing(session_factory):
    mem = memory()
    add_rows(session_factory, 1, prefix="m")
    add_rows(session_factory, 1, delivery_class="transactional", prefix="t")

    def boom(messages):
        raise RuntimeError("bug")

    mem.send_batch = boom  # type: ignore[method-assign]
    make(session_factory, mem).run_once(NOW)
    m, t = rows(session_factory)
    assert (m["status"], t["status"]) == ("unknown", "retry")


@pytest.mark.parametrize("n", [2000])
def test_two_dispatchers_send_each_message_once(session_factory, n):
    import threading

    mem = memory(max_batch=50)
    add_rows(session_factory, n)
    errors: list[BaseException] = []

    def work(worker):
        try:
            d = Dispatcher(session_factory, {"mem": mem}, worker_id=worker)
            for _ in range(1000):
                if d.run_once(NOW, batch=100).claimed == 0:
                    break
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    keys = [s.message.idempotency_key for s in mem.sent]
    assert len(keys) == n and len(set(keys)) == n
    assert statuses(session_factory) == {"sent": n}
    by_worker = {}
    for r in rows(session_factory):
        by_worker[r["provider_id"]] = 1
    assert len(by_worker) == n
