"""Killing the worker mid-run, and two workers at once, never enter or message anyone twice.

A fresh database with 100,000 customers (built set-based, as bench/rules.py
does), every one of them inactive and with SMS consent except the 1% blocked:
the win-back rule enters 99,000. A worker process runs the scheduler tick;
it is SIGKILLed once some batches have committed, then started again. After
that every matching customer has exactly one journey, one coupon and one
first SMS. On PostgreSQL, two workers start at once on one database.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.storage.database import make_engine
from engine.storage.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("crash_worker.py")
N = 100_000

pytestmark = pytest.mark.slow


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_rules", ROOT / "bench" / "rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_rules"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _build(url: str) -> int:
    """Migrate, build the customers; how many match the win-back audience."""
    rules = _bench()
    engine = make_engine(url)
    try:
        upgrade(engine)
        rules.build(engine, N, inactive_every=1, consent_every=1)
        with engine.connect() as c:
            return int(c.execute(text(
                "SELECT count(*) FROM customers c WHERE NOT EXISTS (SELECT 1 FROM customer_tags t "
                "WHERE t.customer_id = c.id AND t.tag = 'vip_blocked')")).scalar())
    finally:
        engine.dispose()


def _worker(url: str, batch: int = 1000) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), url, str(batch)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(c.execute(text(sql)).scalar() or 0)
    finally:
        engine.dispose()


def _check(url: str, expected: int) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            def one(sql: str) -> object:
                return c.execute(text(sql)).scalar()

            assert one("SELECT count(*) FROM journeys WHERE rule_id = 'winback_90d'") == expected
            assert one("SELECT count(DISTINCT subject_id) FROM journeys WHERE rule_id = 'winback_90d'") == expected
            # Every journey went through its first steps and now waits seven days.
            assert one("SELECT count(*) FROM journeys WHERE rule_id = 'winback_90d' AND status = 'active' "
                       "AND step_id = 's3'") == expected
            assert one("SELECT count(*) FROM coupons") == expected
            assert one("SELECT count(DISTINCT journey_id) FROM coupons") == expected
            assert one("SELECT count(*) FROM outbox WHERE rule_id = 'winback_90d'") == expected
            assert one("SELECT count(DISTINCT customer_id) FROM outbox WHERE rule_id = 'winback_90d'") == expected
            # Each SMS names its own journey's coupon.
            assert one("SELECT count(*) FROM outbox o JOIN coupons k ON k.journey_id = o.journey_id "
                       "WHERE o.body LIKE '%' || k.code || '%'") == expected
            assert one("SELECT count(*) FROM rule_runs WHERE kind = 'schedule' AND rule_id = 'winback_90d'") == 1
    finally:
        engine.dispose()


def test_sigkill_mid_run_then_restart_enters_and_messages_each_once(db_url: str) -> None:
    expected = _build(db_url)
    assert expected == 99_000
    worker = _worker(db_url)
    deadline = time.monotonic() + 45
    sent = 0
    while time.monotonic() < deadline and worker.poll() is None:
        sent = _count(db_url, "SELECT count(*) FROM outbox")
        if sent >= 2000:  # a few batches committed, many to go
            break
        time.sleep(0.02)
    assert worker.poll() is None, worker.communicate()
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    done = _count(db_url, "SELECT count(*) FROM outbox")
    assert 0 < done < expected, done  # killed in the middle
    again = _worker(db_url)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    _check(db_url, expected)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer
def test_two_workers_at_once_on_postgresql(db_url: str) -> None:
    expected = _build(db_url)
    workers = [_worker(db_url, 500) for _ in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()[-2000:]
    _check(db_url, expected)
