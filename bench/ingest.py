"""100,000 orders through the batch API, next to a bare executemany INSERT of
the same rows into the same table.

* project: ``POST /api/v1/orders/batch`` with 1,000 orders a request through
  the app's in-process test client (the whole Flask stack: token, JSON
  parsing, validation, customer lookup by external id, idempotency check,
  the INSERT, the customers' order aggregates, RFM scores and segments,
  ``order.created`` events, the JSON answer with one result per order);
* baseline: the same orders as rows, one ``executemany`` INSERT into
  ``orders`` and one commit per 1,000 (no validation, no aggregates, no
  events), into the same table, alternating with the project batch by batch
  so that both meet the same load on a shared machine.

20,000 customers (at scale 1) are seeded first, five orders each; both
sides write the same number of rows.

    python bench/ingest.py [--scale S] [--db URL]

``--db postgresql://postgres@127.0.0.1:5432/test`` runs in a throw-away schema
of that database (dropped afterwards). The last line is
``ratio=R project=P baseline=B unit=orders/s`` with R = P ÷ B (the target is
R ≥ 0.25).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from sqlalchemy import func, insert, select, text

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from engine.storage import customers_repo
from engine.storage.database import make_engine, transaction
from engine.storage.models import Customer, Event, Order
from engine.storage.migrate import upgrade
from web import create_app

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
BATCH = 1000
PER_CUSTOMER = 5


def _orders(n: int, n_customers: int, source: str) -> list[dict]:
    """``n`` API order bodies (two lines each), customers round-robin."""
    start = NOW - timedelta(days=365)
    out = []
    for i in range(n):
        price = Decimal(10 + i % 90)
        out.append({
            "source": source, "external_id": f"O{i:07d}", "customer": {"external_id": f"C{i % n_customers:06d}"},
            "lines": [{"sku": f"SKU-{i % 50}", "name": "咖啡豆", "quantity": 2, "unit_price": f"{price:.2f}"},
                      {"sku": "CUP", "name": "马克杯", "quantity": 1, "unit_price": "30.00"}],
            "amount": f"{2 * price + 25:.2f}", "discount": "5.00", "store": f"S{i % 20:02d}", "channel": "store",
            "placed_at": (start + timedelta(minutes=5 * i)).isoformat(), "coupon_code": None,
        })
    return out


def _seed(session_factory, n_customers: int) -> dict[str, int]:
    """Bench fixture: customers written directly (the thing measured is orders)."""
    with transaction(session_factory) as session:
        rows = [{"external_id": f"C{i:06d}", "name": f"顾客{i}", "phone": f"139{i:08d}",
                 "created_at": NOW.replace(tzinfo=None), "updated_at": NOW.replace(tzinfo=None)}
                for i in range(n_customers)]
        ids = customers_repo.insert_customers(session, rows)
    return {r["external_id"]: cid for r, cid in zip(rows, ids)}


def _baseline_rows(bodies: list[dict], customer_ids: dict[str, int]) -> list[dict]:
    """The same orders as plain rows (status ``cancelled`` so they never count in
    the project's aggregates, which read the same table)."""
    return [{"source": "baseline", "external_id": b["external_id"],
             "customer_id": customer_ids[b["customer"]["external_id"]], "amount": Decimal(b["amount"]),
             "discount": Decimal(b["discount"]), "net_amount": Decimal(0), "refunded_amount": Decimal(0),
             "lines": b["lines"], "placed_at": datetime.fromisoformat(b["placed_at"]).astimezone(UTC)
             .replace(tzinfo=None), "channel": b["channel"], "store": b["store"], "campaign": None,
             "coupon_code": None, "status": "cancelled", "body_hash": None,
             "created_at": NOW.replace(tzinfo=None)} for b in bodies]


def run(app, bodies: list[dict], customer_ids: dict[str, int], token: str) -> tuple[float, float]:
    """Batch by batch, alternating: the baseline's executemany of 1,000 rows (one
    transaction), then the project's request for the same 1,000 orders. On a
    shared machine both sides meet the same load. Returns (project s, baseline s)."""
    engine = app.extensions["promoflow"].db_engine
    stmt = insert(Order.__table__)
    rows = _baseline_rows(bodies, customer_ids)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payloads = [json.dumps({"orders": bodies[k:k + BATCH]}) for k in range(0, len(bodies), BATCH)]
    t_project = t_base = 0.0
    for i, payload in enumerate(payloads):
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(stmt, rows[i * BATCH:(i + 1) * BATCH])
        t_base += time.perf_counter() - start
        start = time.perf_counter()
        response = client.post("/api/v1/orders/batch", data=payload, headers=headers)
        t_project += time.perf_counter() - start
        assert response.status_code == 200, response.text[:500]
        assert b'"created":1000,' in response.data, response.data[-200:]
    return t_project, t_base


def _database(arg: str | None, tmp: str) -> tuple[str, object]:
    """The URL to use and a cleanup callable (a throw-away PostgreSQL schema)."""
    if not arg or arg.startswith("sqlite"):
        return arg or f"sqlite:///{Path(tmp) / 'bench.sqlite'}", lambda: None
    schema = f"pf_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(arg)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in arg else "?"

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return f"{arg}{separator}options={quote(f'-csearch_path={schema}', safe='')}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 100,000 orders (0 < S <= 1)")
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temporary directory)")
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    n = max(BATCH, int(100_000 * args.scale) // BATCH * BATCH)
    n_customers = n // PER_CUSTOMER
    with tempfile.TemporaryDirectory() as tmp:
        url, cleanup = _database(args.db, tmp)
        try:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            settings = Settings(instance_path=Path(tmp), database_url=url, secret_key="bench", timezone="Asia/Shanghai")
            app = create_app({"MIGRATE": False, "CLOCK": lambda: NOW}, settings=settings)
            services = app.extensions["promoflow"]
            publish_paths(services.session_factory, library_paths(), now=NOW, by="bench")  # the roles
            services.accounts.add_user("till", roles=["integration"], password="bench-pw", now=NOW)
            token = services.accounts.create_token("till", now=NOW)
            customer_ids = _seed(services.session_factory, n_customers)
            if url.startswith("postgresql"):  # planner statistics, as autovacuum keeps them in a live database
                with services.db_engine.begin() as conn:
                    conn.execute(text("ANALYZE customers"))
            bodies = _orders(n, n_customers, "pos")
            # The bench's own 100,000 bodies would be walked by every full garbage collection of either side.
            gc.collect()
            gc.freeze()
            t_project, t_base = run(app, bodies, customer_ids, token)
            with services.session_factory() as s:
                stored = s.scalar(select(func.count()).select_from(Order).where(Order.source == "pos"))
                emitted = s.scalar(select(func.count()).select_from(Event).where(Event.name == "order.created"))
                counted = s.scalar(select(func.sum(Customer.order_count)))
                segmented = s.scalar(select(func.count()).select_from(Customer).where(Customer.rfm_r.is_not(None)))
            assert stored == n and emitted == n and counted == n and segmented == n_customers, \
                (stored, emitted, counted, segmented)
            services.db_engine.dispose()
        finally:
            cleanup()
    p, b = n / t_project, n / t_base
    print(f"orders={n} customers={n_customers} backend={url.split(':')[0]}")
    print(f"project: POST /orders/batch (aggregates, RFM, events)  {t_project:8.2f} s  {p:10.0f} orders/s")
    print(f"baseline: executemany INSERT, commit per {BATCH}         {t_base:8.2f} s  {b:10.0f} orders/s")
    print(f"ratio={p / b:.3f} project={p:.0f} baseline={b:.0f} unit=orders/s")


if __name__ == "__main__":
    main()
