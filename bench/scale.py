"""Rule run plus delivery with 1, 2 and 4 Celery workers, next to the in-process worker (issue 17).

Each mode starts from an empty PostgreSQL schema with 200,000 customers ×
``--scale`` (a tenth match the 90-day win-back rule; bulk history fixture of
tests/fleet/support.py), the shipped library published by ``promoflow
publish`` (the rule firing every minute, the SMS connector pointed at the
local fake Aliyun of tests/connectors/fakes/aliyun.py), then times from the
scheduler's start to the moment every win-back SMS is ``sent``: entry,
coupons, rendered messages, and delivery through the real Aliyun connector
(``SendBatchSms``, 100 numbers a request, signed) to the fake.

* baseline: ``promoflow worker --in-process`` (one process does everything,
  as without a broker);
* project: one ``promoflow worker`` (scheduler, enqueues) plus 1, 2 and 4
  ``promoflow worker --celery`` processes on the real Redis.

    python bench/scale.py [--scale S] [--workers 1,2,4] [--broker redis://127.0.0.1:6379/0]

Throughput is win-back messages (each with its journey and coupon) per
second. The last line is ``ratio=R project=P baseline=B unit=msg/s`` with P
the best Celery mode, B the in-process mode, R = P ÷ B.

What 2 cores can show: the fake provider, PostgreSQL, Redis, the scheduler
and every worker share the same two cores, so more workers cannot add CPU;
beyond two busy processes they only add contention and task overhead. The
figures show that the fleet's overhead is small and that the work splits
(chunks, per-connector tasks) — not the speed-up a fleet of machines gets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from sqlalchemy import text

from engine.storage.database import make_engine
from tests.conftest import pg_base_url, with_search_path
from tests.connectors.fakes.aliyun import FakeAliyun
from tests.fleet.support import Fleet, base_env, bulk_customers, make_project, wait_for

WINBACK_CODE = "SMS_465120002"


def one_mode(workers: int, customers: int, broker: str, folder: Path) -> tuple[float, int]:
    """Seconds from the scheduler's start until every win-back SMS is sent; and how many."""
    schema = f"pf_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg_base_url())
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = with_search_path(pg_base_url(), schema)
    engine = make_engine(url)
    provider = FakeAliyun().start()
    provider.templates[WINBACK_CODE] = ["name", "value", "code"]
    fleet = Fleet(folder)
    try:
        extra = {"PROMOFLOW_FLEET_CHUNK": str(max(1000, customers // (4 * max(1, workers)))),
                 "PROMOFLOW_FLEET_PARTS": str(max(1, workers)), "PROMOFLOW_TASK_QUEUE": f"bench-{schema}"}
        env = base_env(url, folder / "instance", broker if workers else None, PROMOFLOW_LOG_LEVEL=os.environ.get("PROMOFLOW_BENCH_LOG_LEVEL", "WARNING"), **extra)
        project = make_project(folder / "project", env, provider.url, per_second=100_000)
        matching = bulk_customers(engine, customers, datetime.now(UTC))
        for i in range(workers):
            fleet.start(f"celery{i}", ["worker", "--celery"], env)
        if workers:
            time.sleep(4)  # the workers connect and load the app before the clock starts
        started = time.perf_counter()
        fleet.start("scheduler", ["worker", "--interval", "1", *([] if workers else ["--in-process"])], env,
                    cwd=project)

        def sent() -> bool:
            with engine.connect() as c:
                n = c.execute(text("SELECT count(*) FROM outbox WHERE template_id = 'winback_sms' "
                                   "AND status = 'sent'")).scalar_one()
            return n >= matching

        wait_for(sent, 1800, "every message sent", every=0.25)
        seconds = time.perf_counter() - started
        assert len(provider.delivered) == matching, (len(provider.delivered), matching)
        return seconds, matching
    finally:
        fleet.stop_all()
        provider.stop()
        engine.dispose()
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="× 200,000 customers")
    parser.add_argument("--workers", default="1,2,4", help="Celery worker counts to run")
    parser.add_argument("--broker", default=os.environ.get("PROMOFLOW_BENCH_BROKER", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    customers = max(1000, int(200_000 * args.scale))
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    print(f"{customers:,} customers, broker {args.broker}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        base_s, n = one_mode(0, customers, args.broker, Path(tmp) / "inprocess")
    baseline = n / base_s
    print(f"in-process worker: {n:,} messages (entry, coupon, SMS) in {base_s:.1f} s = {baseline:,.0f} msg/s")
    best = 0.0
    for workers in counts:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, n = one_mode(workers, customers, args.broker, Path(tmp) / f"celery{workers}")
        rate = n / seconds
        best = max(best, rate)
        print(f"{workers} Celery worker(s) + scheduler: {n:,} messages in {seconds:.1f} s = {rate:,.0f} msg/s "
              f"({rate / baseline:.2f}× in-process)")
    print(f"ratio={best / baseline:.2f} project={best:.0f} baseline={baseline:.0f} unit=msg/s")


if __name__ == "__main__":
    main()
