"""The fleet test (issue 17): the win-back rule run by a fleet on the real
PostgreSQL and broker, with a Celery worker and the active scheduler
SIGKILLed midway.

Two web processes (``promoflow serve --workers 2``: gunicorn), three
``promoflow worker --celery`` processes, two schedulers (``promoflow worker``
with ``PROMOFLOW_BROKER_URL``) and the fake Aliyun SMS provider. Customers
come from a bulk history fixture; the rule, its coupon pool and the SMS
connector are published with ``promoflow publish``. Once a quarter of the
messages reached the provider, the Celery worker that holds claimed
messages at that instant (found by the pid in ``claimed_by``) and the
active scheduler are killed with SIGKILL; the standby takes over and the
other workers finish (the killed worker's task is handed on: RabbitMQ at
once, Redis after ``task_visibility``; its claims are reaped after
``dispatch_reap_after``).

Asserted: every matching customer entered once and nobody else, one coupon
each, every SMS reached the provider exactly once except the batch that was
in flight in the killed worker (left ``unknown``, at most once, for the
status query or a person), and ``/readyz`` names the new leader.

Size: ``PROMOFLOW_FLEET_CUSTOMERS`` (default 200,000 customers, of whom
about a tenth match). The RabbitMQ variant runs with
``PROMOFLOW_FLEET_RABBIT_CUSTOMERS`` (default 20,000).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.storage.database import make_engine
from tests.connectors.fakes.aliyun import FakeAliyun

from .support import (
    AMQP_URL,
    REDIS_URL,
    Fleet,
    base_env,
    bulk_customers,
    free_port,
    make_project,
    reachable,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(420)]

WINBACK_CODE = "SMS_465120002"
BATCH = 100  # the Aliyun connector's batch: what one killed worker can leave in doubt


def _counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        return {
            "journeys": c.execute(text("SELECT count(*) FROM journeys WHERE rule_id = 'winback_90d'")).scalar_one(),
            "coupons": c.execute(text("SELECT count(*) FROM coupons WHERE pool_id = 'winback20'")).scalar_one(),
            "outbox": c.execute(text("SELECT count(*) FROM outbox")).scalar_one(),
            "settled": c.execute(text("SELECT count(*) FROM outbox WHERE status IN ('sent', 'unknown')")).scalar_one(),
        }


def _readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except OSError:
        return {}


def _delivering(fleet: Fleet, names: list[str], engine) -> str | None:  # type: ignore[no-untyped-def]
    """A Celery worker holding claimed messages right now (``claimed_by`` is
    host:pid:dispatcher, and a threads-pool worker sends from its own pid)."""
    with engine.connect() as c:
        claims = c.execute(text("SELECT DISTINCT claimed_by FROM outbox WHERE status = 'sending'")).scalars().all()
    pids = {claim.split(":")[1] for claim in claims if claim and claim.count(":") >= 2}
    return next((n for n in names if str(fleet.procs[n].pid) in pids), None)


def _active(fleet: Fleet, names: list[str]) -> str | None:
    for name in names:
        if fleet.procs[name].poll() is None and "is the active scheduler" in fleet.log(name):
            return name
    return None


def run_fleet(db_url: str, tmp_path: Path, broker: str, customers: int, *, limits_url: str | None = None) -> None:
    provider = FakeAliyun().start()
    provider.templates[WINBACK_CODE] = ["name", "value", "code"]
    instance = tmp_path / "instance"
    extra = {"PROMOFLOW_FLEET_CHUNK": str(max(1000, customers // 12)), "PROMOFLOW_FLEET_PARTS": "3",
             "PROMOFLOW_TASK_VISIBILITY": "20", "PROMOFLOW_TASK_TIMEOUT": "120",
             "PROMOFLOW_DISPATCH_REAP_AFTER": "20s", "PROMOFLOW_TASK_QUEUE": f"fleet-{uuid.uuid4().hex[:8]}"}
    if limits_url:
        extra["PROMOFLOW_LIMITS_URL"] = limits_url
    env = base_env(db_url, instance, broker, **extra)
    engine = make_engine(db_url)
    fleet = Fleet(tmp_path)
    try:
        project = make_project(tmp_path / "project", env, provider.url)
        matching = bulk_customers(engine, customers, datetime.now(UTC))
        assert matching > customers // 20

        port = free_port()
        fleet.start("web", ["serve", "--workers", "2", "--port", str(port), "--threads", "2"], env)
        for i in range(3):
            fleet.start(f"celery{i}", ["worker", "--celery", "--concurrency", "1"], env)
        schedulers = ["scheduler0", "scheduler1"]
        fleet.start("scheduler0", ["worker", "--interval", "5"], env, cwd=project)
        wait_for(lambda: _active(fleet, ["scheduler0"]), 90, "the first scheduler to lead")
        fleet.start("scheduler1", ["worker", "--interval", "5"], env, cwd=project)
        wait_for(lambda: _readyz(port).get("checks"), 90, "the web processes")

        # Midway: a quarter of the messages at the provider.
        wait_for(lambda: len(provider.delivered) >= matching // 4, 240, "a quarter of the deliveries", every=0.05)
        leader = _active(fleet, schedulers)
        assert leader is not None
        workers = [f"celery{i}" for i in range(3)]
        victim = wait_for(lambda: _delivering(fleet, workers, engine), 30, "a worker delivering", every=0.01)
        fleet.kill(victim)  # mid-delivery: its claimed batch is in doubt
        fleet.kill(leader)
        killed_at = time.monotonic()
        standby = next(n for n in schedulers if n != leader)
        wait_for(lambda: "is the active scheduler" in fleet.log(standby), 60, "the standby to take over")
        took_over = time.monotonic() - killed_at
        assert took_over < 60

        def finished() -> bool:
            c = _counts(engine)
            return c["journeys"] >= matching and c["settled"] >= matching and c["outbox"] >= matching

        wait_for(finished, 240, "every message sent or settled", every=1.0)
        time.sleep(6)  # one more tick: nothing further may be sent
        ready = _readyz(port)
        assert ready["checks"]["scheduler"]["held"] is True, ready
    finally:
        fleet.stop_all()
        provider.stop()

    with engine.connect() as c:
        journeys = c.execute(text("SELECT subject_id, count(*) FROM journeys WHERE rule_id = 'winback_90d' "
                                  "GROUP BY subject_id")).all()
        coupons = c.execute(text("SELECT customer_id, count(*) FROM coupons WHERE pool_id = 'winback20' "
                                 "GROUP BY customer_id")).all()
        outbox = c.execute(text("SELECT recipient, status FROM outbox WHERE template_id = 'winback_sms'")).all()
        runs = c.execute(text("SELECT count(*), coalesce(sum(entered), 0) FROM rule_runs "
                              "WHERE rule_id = 'winback_90d' AND kind = 'schedule'")).one()
    engine.dispose()
    assert len(journeys) == matching and all(n == 1 for _, n in journeys), "every matching customer entered once"
    assert len(coupons) == matching and all(n == 1 for _, n in coupons), "one coupon each"
    assert runs[1] == matching, "the runs' counters add up to the customers entered"
    assert len(outbox) == matching
    statuses = Counter(status for _, status in outbox)
    assert set(statuses) <= {"sent", "unknown"}, statuses
    assert statuses["unknown"] <= BATCH, statuses  # the batch in flight in the killed worker
    delivered = Counter(entry["phone"] for entry in provider.delivered)
    assert max(delivered.values()) == 1, "an SMS reached a customer twice"
    for recipient, status in outbox:
        if status == "sent":
            assert delivered[recipient] == 1, recipient
    assert len(delivered) >= matching - statuses["unknown"]
    print(f"fleet: {customers:,} customers, {matching:,} entered, {statuses['sent']:,} sent, "
          f"{statuses['unknown']} in doubt after SIGKILL, standby led after {took_over:.1f}s")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_fleet_on_redis(db_url: str, tmp_path: Path) -> None:
    if not reachable("127.0.0.1", 6379):
        pytest.fail("Redis is not running at 127.0.0.1:6379 (scripts/services.sh starts it)")
    customers = int(os.environ.get("PROMOFLOW_FLEET_CUSTOMERS", "200000"))
    run_fleet(db_url, tmp_path, REDIS_URL.format(db=0), customers)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_fleet_on_rabbitmq(db_url: str, tmp_path: Path) -> None:
    if not reachable("127.0.0.1", 5672):
        pytest.fail("RabbitMQ is not running at 127.0.0.1:5672 (scripts/services.sh starts it)")
    customers = int(os.environ.get("PROMOFLOW_FLEET_RABBIT_CUSTOMERS", "20000"))
    run_fleet(db_url, tmp_path, AMQP_URL.format(vhost="/"), customers, limits_url=REDIS_URL.format(db=0))
