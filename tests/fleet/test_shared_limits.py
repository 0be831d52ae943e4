"""A connector-wide rate limit holds for several dispatchers together when
their windows live in the real Redis (issue 17), and does not with the
per-process windows (the control). Two dispatchers stand for two Celery
workers: each has its own Redis client and nothing in common but the
database and Redis."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import redis

from engine.dispatch import Dispatcher
from engine.dispatch_limits import RatePolicy
from tests.dispatch.support import NOW, add_rows, memory
from web.shared_limits import RedisWindow, limits_url, redis_windows

from .support import REDIS_URL, reachable

LIMIT = 50


@pytest.fixture
def redis_url() -> str:
    if not reachable("127.0.0.1", 6379):
        pytest.fail("Redis is not running at 127.0.0.1:6379 (scripts/services.sh starts it)")
    return REDIS_URL.format(db=0)


def _pair(session_factory, windows_a, windows_b):  # type: ignore[no-untyped-def]
    policies = {"mem": RatePolicy(per_second=LIMIT)}
    a = Dispatcher(session_factory, {"mem": memory()}, worker_id="a", rate_policies=policies, windows=windows_a)
    b = Dispatcher(session_factory, {"mem": memory()}, worker_id="b", rate_policies=policies, windows=windows_b)
    return a, b


def _run_both(a: Dispatcher, b: Dispatcher, at) -> int:  # type: ignore[no-untyped-def]
    """Both dispatch at the same instant in two threads; how many they sent together."""
    sent = [0, 0]

    def go(i: int, d: Dispatcher) -> None:
        sent[i] = d.run_once(at, batch=500).sent

    threads = [threading.Thread(target=go, args=(0, a)), threading.Thread(target=go, args=(1, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(sent)


def test_one_window_for_all_dispatchers(session_factory, redis_url: str) -> None:
    add_rows(session_factory, 400, connector="mem")
    prefix = f"promoflow:test:{uuid.uuid4().hex}:"

    def windows():  # type: ignore[no-untyped-def]
        client = redis.Redis.from_url(redis_url)  # one client per "worker"
        return lambda cid, limits: RedisWindow(client, cid, limits, prefix=prefix)

    a, b = _pair(session_factory, windows(), windows())
    assert _run_both(a, b, NOW) == LIMIT  # together, never one limit each
    assert _run_both(a, b, NOW + timedelta(milliseconds=500)) == 0  # same second: no room left
    assert _run_both(a, b, NOW + timedelta(seconds=1, milliseconds=1)) == LIMIT  # the window slid on
    sent_by = len(a.connectors["mem"].sent), len(b.connectors["mem"].sent)  # type: ignore[attr-defined]
    assert sum(sent_by) == 2 * LIMIT


def test_per_process_windows_each_take_a_limit(session_factory) -> None:
    """The control: without a shared window two dispatchers send twice the limit."""
    add_rows(session_factory, 400, connector="mem")
    a, b = _pair(session_factory, None, None)
    assert _run_both(a, b, NOW) == 2 * LIMIT


def test_unclaimed_slots_go_back(session_factory, redis_url: str) -> None:
    """A dispatcher reserves a batch, claims fewer rows: the rest return to the window."""
    add_rows(session_factory, 10, connector="mem")
    prefix = f"promoflow:test:{uuid.uuid4().hex}:"
    client = redis.Redis.from_url(redis_url)
    factory = lambda cid, limits: RedisWindow(client, cid, limits, prefix=prefix)
    a, _ = _pair(session_factory, factory, factory)
    assert a.run_once(NOW, batch=500).sent == 10
    window = RedisWindow(client, "mem", [(LIMIT, 1.0)], prefix=prefix)
    assert window.available(NOW.timestamp()) == LIMIT - 10


def test_limits_url() -> None:
    assert limits_url("redis://h:6379/0") == "redis://h:6379/0"
    assert limits_url("amqp://guest:guest@h//") is None
    assert limits_url("amqp://guest:guest@h//", "redis://h/1") == "redis://h/1"
    assert callable(redis_windows("redis://127.0.0.1:6379/0"))
