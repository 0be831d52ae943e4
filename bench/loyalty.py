"""The daily points expiry over a million customers, next to the bare statement.

Builds 1,000,000 customers (× ``--scale``), each with two points lots — one
due today with part of it spent, one lapsing next year — as a bulk history
fixture (set-based INSERT … SELECT, labelled as such: the bench measures the
expiry, not earning). Then, in the same run and on the same data:

* baseline: the one hand-written ``UPDATE points_ledger SET remaining = 0
  WHERE remaining > 0 AND expires_on <= :today`` (rolled back afterwards), the
  least any expiry must do;
* project: the scheduler's loyalty tick (``engine.loyalty.tick``): it claims
  the day, writes one ``expire`` entry per customer (INSERT … SELECT … GROUP
  BY), zeroes the due lots and recomputes those customers' balances and next
  lapse day — three set-based statements.

    python bench/loyalty.py [--scale S] [--backend both|sqlite|postgresql]

Each backend prints its own ``[backend] ratio=…`` line; the last line is
SQLite's: ratio=R project=P baseline=B unit=customers/s, R = baseline time ÷
project time (higher is better).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import func, select, text

from engine.definitions.loader import DefinitionSet
from engine.loyalty.tick import loyalty_tick
from engine.storage.database import make_engine, make_session_factory
from engine.storage.migrate import upgrade
from engine.storage.models import Customer, PointsEntry

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
TODAY = date(2026, 3, 1)
STAMP = "2025-03-01 02:00:00"


def build(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """Bulk history fixture: ``n`` customers, two lots each (set-based SQL, not the product's writer)."""
    pg = engine.dialect.name == "postgresql"
    seq = (f"generate_series(1, {n}) AS n" if pg else
           f"(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {n}) SELECT n FROM s)")
    with engine.begin() as c:
        c.execute(text(f"""INSERT INTO customers (id, name, order_count, total_spent, points, points_expire_on,
                                                  created_at, updated_at)
                           SELECT n, 'customer ' || n, 1, 100, 150, DATE '2026-02-27', TIMESTAMP '{STAMP}',
                                  TIMESTAMP '{STAMP}' FROM {seq}""" if pg else
                       f"""INSERT INTO customers (id, name, order_count, total_spent, points, points_expire_on,
                                                  created_at, updated_at)
                           SELECT n, 'customer ' || n, 1, 100, 150, '2026-02-27', '{STAMP}', '{STAMP}' FROM {seq}"""))
        day = "DATE '2026-02-27'" if pg else "'2026-02-27'"
        later = "DATE '2027-02-27'" if pg else "'2027-02-27'"
        stamp = f"TIMESTAMP '{STAMP}'" if pg else f"'{STAMP}'"
        for lot, (amount, remaining, expires) in enumerate(((100, 60, day), (90, 90, later))):
            c.execute(text(f"""INSERT INTO points_ledger (customer_id, kind, amount, remaining, expires_on, reason,
                                                          source, source_ref, idempotency_key, created_at)
                               SELECT id, 'earn', {amount}, {remaining}, {expires}, 'bench', 'order', NULL,
                                      'bench-' || id || '-{lot}', {stamp} FROM customers"""))
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as c:
            c.exec_driver_sql("ANALYZE")


@dataclass
class Result:
    backend: str
    n: int
    baseline_s: float
    project_s: float

    @property
    def ratio(self) -> float:
        return self.baseline_s / self.project_s


def one_backend(backend: str, url: str, n: int) -> Result:
    engine = make_engine(url)
    upgrade(engine)
    t0 = time.perf_counter()
    build(engine, n)
    print(f"[{backend}] built {n} customers, {2 * n} lots in {time.perf_counter() - t0:.1f} s")
    with engine.connect() as c:
        tx = c.begin()
        t0 = time.perf_counter()
        done = c.execute(text("UPDATE points_ledger SET remaining = 0 WHERE remaining > 0 AND expires_on <= :today"),
                         {"today": TODAY}).rowcount
        baseline_s = time.perf_counter() - t0
        tx.rollback()
    assert done == n, done
    sf = make_session_factory(engine)
    t0 = time.perf_counter()
    report = loyalty_tick(sf, now=NOW, definitions=DefinitionSet(), tz="Asia/Shanghai")
    project_s = time.perf_counter() - t0
    with sf() as s:
        left = s.scalar(select(func.sum(Customer.points)))
        entries = s.scalar(select(func.count()).select_from(PointsEntry).where(PointsEntry.kind == "expire"))
    assert report.expired_customers == n and entries == n and left == 90 * n, (report, entries, left)
    engine.dispose()
    result = Result(backend, n, baseline_s, project_s)
    print(f"[{backend}] expiry tick {project_s:.2f} s vs bare UPDATE {baseline_s:.2f} s")
    print(f"[{backend}] ratio={result.ratio:.2f} project={n / project_s:.0f} baseline={n / baseline_s:.0f} "
          f"unit=customers/s")
    return result


def main() -> None:
    from rules import (  # the throw-away PostgreSQL schema of bench/rules.py
        drop_schema,
        pg_url,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    args = parser.parse_args()
    n = int(1_000_000 * args.scale)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("both", "postgresql"):
            url = pg_url()
            if url is not None:
                try:
                    results.append(one_backend("postgresql", url, n))
                finally:
                    drop_schema(url)
        if args.backend in ("both", "sqlite"):
            results.append(one_backend("sqlite", f"sqlite:///{Path(tmp) / 'bench.sqlite'}", n))
    last = results[-1]
    print(f"ratio={last.ratio:.2f} project={last.n / last.project_s:.0f} baseline={last.n / last.baseline_s:.0f} "
          f"unit=customers/s")


if __name__ == "__main__":
    main()
