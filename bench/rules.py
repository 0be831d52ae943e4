"""One run of the 90-day win-back rule over a million customers, next to the bare statement.

Builds 1,000,000 customers (× ``--scale``) with one order and an SMS consent
each, set-based (INSERT … SELECT from a recursive CTE), in a SQLite file.
About 10% match the rule (inactive > 90 days, SMS consent, not blocked).
Then, in the same run:

* baseline: the one hand-written ``INSERT INTO journeys … SELECT … FROM
  customers WHERE … ON CONFLICT DO NOTHING`` entering the same customers;
* project: ``run_rule(winback_90d)``: entry and the first steps of every
  journey (a coupon each, the rendered SMS in the outbox, the wait) as a few
  ``INSERT … SELECT`` statements per chunk of customer ids (see
  ``engine/automation/setentry.py``), then the (empty) advance of due journeys;
* contrast: a naive per-customer ORM loop (load, test, add journey) over
  100,000 customers (× scale).

    python bench/rules.py [--scale S] [--backend both|sqlite|postgresql] [--no-naive] [--experiment]

``--experiment``: the win-back rule holds back a 10 % control group and splits
the rest over two variants (the second with 30-yuan coupons): every journey
gets its arm in the entry statement and the coupon and SMS statements run
once per variant; the control group gets neither.

Runs on SQLite and, when reachable (``PROMOFLOW_TEST_PG_URL``, default the
tests' server), on PostgreSQL in a throw-away schema. Each backend prints its
figures and its own ``[backend] ratio=…`` line; the last line is SQLite's:
ratio=R project=P baseline=B unit=customers/s, where both rates are customers
scanned per second and R = project rate ÷ baseline rate (= baseline time ÷
rule time; higher is better, the target "within 3×" is R ≥ 0.33).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text

from engine.automation import run_rule
from engine.definitions.loader import DefinitionSet, load_paths
from engine.storage.database import make_engine, make_session_factory, transaction
from engine.storage.migrate import upgrade
from engine.storage.models import Consent, Customer, CustomerTag, Journey

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
DB_NOW = NOW.replace(tzinfo=None)
CONNECTORS = """
- {kind: connector, id: sms_aliyun, type: log, channel: sms, default: true}
- {kind: connector, id: email_smtp, type: log, channel: email, default: true}
- {kind: connector, id: wecom_app, type: log, channel: wecom, default: true}
- {kind: connector, id: wecom_customer, type: log, channel: wecom}
"""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def definitions(tmp: Path, *, experiment: bool = False) -> DefinitionSet:
    (tmp / "connectors.yaml").write_text(CONNECTORS, encoding="utf-8")
    defs = load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", tmp / "connectors.yaml"],
                      relative_to=ROOT).raise_for_errors()
    # The shipped pool stops at 10,000 coupons; the bench issues one per entered customer.
    specs = {k: dict(v) for k, v in defs.specs.items()}
    specs["coupon_pool"]["winback20"] = replace(defs.coupon_pools["winback20"], max_issued=None, budget=None)
    if experiment:
        from decimal import Decimal

        from engine.definitions.specs import ExperimentSpec, VariantSpec

        specs["rule"]["winback_90d"] = replace(defs.rules["winback_90d"], experiment=ExperimentSpec(
            holdout=10, salt="bench", variants=(VariantSpec("a", 1, "20元券", "20-yuan coupon"),
                                                VariantSpec("b", 1, "30元券", "30-yuan coupon",
                                                            coupon_value=Decimal(30)))))
    return DefinitionSet(documents=defs.documents, specs=specs)


def build(engine, n: int, *, inactive_every: int = 5, consent_every: int = 2) -> None:  # type: ignore[no-untyped-def]
    """n customers, set-based: every ``inactive_every``-th inactive (91–400
    days), every ``consent_every``-th with SMS consent, 1% blocked. SQLite or PostgreSQL."""
    stamp = DB_NOW.isoformat(sep=" ")
    days = f"(CASE WHEN n % {inactive_every} = 0 THEN 91 + n % 310 ELSE 1 + n % 89 END)"
    if engine.dialect.name == "postgresql":
        customers = f"""
            INSERT INTO customers (id, name, phone, email, level, last_purchase_at, order_count, total_spent,
                                   timezone, created_at, updated_at)
            SELECT n, 'customer ' || n, '138' || lpad(n::text, 8, '0'), 'c' || n || '@example.com', 'normal',
                   TIMESTAMP '{stamp}' - make_interval(days => {days}), 1, 100, 'Asia/Shanghai',
                   TIMESTAMP '{stamp}', TIMESTAMP '{stamp}'
            FROM generate_series(1, {n}) AS n"""
        granted = f"id % {consent_every} = 0"
    else:
        customers = f"""
            INSERT INTO customers (id, name, phone, email, level, last_purchase_at, order_count, total_spent,
                                   timezone, created_at, updated_at)
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n})
            SELECT n, 'customer ' || n, '138' || printf('%08d', n), 'c' || n || '@example.com', 'normal',
                   strftime('%Y-%m-%d %H:%M:%f000', '{stamp}', '-' || {days} || ' days'),
                   1, 100, 'Asia/Shanghai', '{stamp}', '{stamp}'
            FROM seq"""
        granted = f"id % {consent_every} = 0"
    with engine.begin() as c:
        c.execute(text(customers))
        c.execute(text(f"""
            INSERT INTO orders (customer_id, amount, placed_at, status, created_at)
            SELECT id, 100, last_purchase_at, 'paid', '{stamp}' FROM customers"""))
        c.execute(text(f"""
            INSERT INTO consents (customer_id, channel, granted, source, updated_at)
            SELECT id, 'sms', {granted}, 'bench', '{stamp}' FROM customers"""))
        c.execute(text("INSERT INTO customer_tags (customer_id, tag) SELECT id, 'vip_blocked' FROM customers "
                       "WHERE id % 100 = 10"))
        if engine.dialect.name == "postgresql":
            c.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers))"))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as c:
            c.exec_driver_sql("ANALYZE")


BASELINE = """
INSERT INTO journeys (rule_id, rule_version, subject_type, subject_id, period_key, step_index, status, due_at,
                      entered_at, version)
SELECT 'baseline', 1, 'customer', c.id, 'w0', 0, 'active', :now, :now, 1
FROM customers c
WHERE c.last_purchase_at < :cut
  AND EXISTS (SELECT 1 FROM consents s WHERE s.customer_id = c.id AND s.channel = 'sms' AND s.granted)
  AND NOT EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id AND t.tag = 'vip_blocked')
ON CONFLICT DO NOTHING
"""


def naive(session_factory, limit: int) -> int:  # type: ignore[no-untyped-def]
    """The per-customer way: load each customer, test it in Python, add a journey."""
    entered = 0
    cut = DB_NOW - timedelta(days=90)
    with transaction(session_factory) as s:
        for cid in range(1, limit + 1):
            customer = s.get(Customer, cid)
            if customer is None or customer.last_purchase_at is None or customer.last_purchase_at >= cut:
                continue
            consent = s.scalar(select(Consent.granted).where(Consent.customer_id == cid, Consent.channel == "sms"))
            blocked = s.scalar(select(CustomerTag.tag).where(CustomerTag.customer_id == cid,
                                                             CustomerTag.tag == "vip_blocked"))
            if consent and not blocked:
                s.add(Journey(rule_id="naive", rule_version=1, subject_type="customer", subject_id=cid,
                              period_key="w0", status="active", due_at=DB_NOW, entered_at=DB_NOW))
                entered += 1
    return entered


@dataclass
class Result:
    backend: str
    n: int
    baseline_s: float
    project_s: float

    @property
    def ratio(self) -> float:
        """Project throughput ÷ baseline throughput (higher is better; 1 = as fast as the bare statement)."""
        return self.baseline_s / self.project_s


def one_backend(backend: str, url: str, n: int, defs: DefinitionSet, naive_n: int) -> Result:
    engine = make_engine(url)
    upgrade(engine)
    t = time.perf_counter()
    build(engine, n)
    print(f"[{backend}] built {n:,} customers with orders and consents in {time.perf_counter() - t:.1f} s")
    session_factory = make_session_factory(engine)

    t = time.perf_counter()
    with engine.begin() as c:
        base_entered = c.execute(text(BASELINE), {"now": DB_NOW, "cut": DB_NOW - timedelta(days=90)}).rowcount
    baseline_s = time.perf_counter() - t
    print(f"[{backend}] baseline INSERT … SELECT: {base_entered:,} entered in {baseline_s:.2f} s")

    t = time.perf_counter()
    report = run_rule(session_factory, "winback_90d", now=NOW, definitions=defs)
    project_s = time.perf_counter() - t
    with engine.connect() as c:
        outbox = c.execute(text("SELECT count(*) FROM outbox")).scalar()
        coupons = c.execute(text("SELECT count(*) FROM coupons")).scalar()
    print(f"[{backend}] run_rule(winback_90d): {report.entered:,} entered, {report.counters.sent:,} SMS queued "
          f"({outbox:,} outbox rows, {coupons:,} coupons) in {project_s:.2f} s "
          f"({project_s / baseline_s:.1f}× the bare statement's time)")
    with engine.connect() as c:
        control = c.execute(text("SELECT count(*) FROM journeys WHERE arm = 'control'")).scalar() or 0
    if control:
        print(f"[{backend}] experiment: {control:,} in the control group (no coupon, no SMS), "
              f"{report.entered - control:,} in the variants")
    assert report.entered == base_entered, "rule and baseline disagree"
    assert report.counters.sent == outbox == coupons == report.entered - control, "messages, coupons and arms disagree"

    t = time.perf_counter()
    again = run_rule(session_factory, "winback_90d", now=NOW + timedelta(hours=1), definitions=defs)
    print(f"[{backend}] second run an hour later: {again.entered} entered, {again.counters.sent} sent "
          f"in {time.perf_counter() - t:.2f} s")

    if naive_n:
        t = time.perf_counter()
        naive_entered = naive(session_factory, naive_n)
        naive_s = time.perf_counter() - t
        print(f"[{backend}] naive ORM loop over {naive_n:,} customers: {naive_entered:,} entered in {naive_s:.2f} s "
              f"({naive_n / naive_s:,.0f} customers/s; the whole rule runs at {n / project_s:,.0f})")
    engine.dispose()
    print(f"[{backend}] ratio={baseline_s / project_s:.2f} project={n / project_s:.0f} baseline={n / baseline_s:.0f} "
          f"unit=customers/s")
    return Result(backend, n, baseline_s, project_s)


def pg_url() -> str | None:
    """A fresh schema on the PostgreSQL server of the tests, or None when unreachable."""
    import uuid
    from urllib.parse import quote

    from sqlalchemy import create_engine

    base = os.environ.get("PROMOFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = make_engine(base, connect_args={"connect_timeout": 3})
        schema = f"pf_bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as c:
            c.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - unreachable means "skip PostgreSQL"
        print(f"PostgreSQL unreachable at {base}: {str(exc).splitlines()[0]}")
        return None
    del create_engine
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}', safe='')}"


def drop_schema(url: str) -> None:
    from urllib.parse import unquote

    schema = unquote(url.rsplit("search_path%3D", 1)[-1]) if "search_path%3D" in url else \
        unquote(url).rsplit("search_path=", 1)[-1]
    base = url.split("?options=")[0].split("&options=")[0]
    admin = make_engine(base)
    with admin.begin() as c:
        c.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive ORM loop")
    parser.add_argument("--experiment", action="store_true",
                        help="a 10%% holdout and two variants in the win-back rule")
    args = parser.parse_args()
    n = int(1_000_000 * args.scale)
    naive_n = 0 if args.no_naive else int(100_000 * args.scale)
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        defs = definitions(tmp, experiment=args.experiment)
        if args.backend in ("both", "postgresql"):
            url = pg_url()
            if url is not None:
                try:
                    results.append(one_backend("postgresql", url, n, defs, naive_n))
                finally:
                    drop_schema(url)
        if args.backend in ("both", "sqlite"):
            results.append(one_backend("sqlite", f"sqlite:///{tmp / 'bench.sqlite'}", n, defs, naive_n))
    print(f"peak RSS {rss_mb():.0f} MB; whole bench {time.perf_counter() - started:.1f} s")
    for r in results:
        print(f"{r.backend}: rule run {r.project_s:.2f} s vs bare statement {r.baseline_s:.2f} s, "
              f"ratio {r.ratio:.2f} (target ≥ 0.33, i.e. within 3×)")
    last = results[-1]
    print(f"ratio={last.ratio:.2f} project={last.n / last.project_s:.0f} baseline={last.n / last.baseline_s:.0f} "
          f"unit=customers/s")


if __name__ == "__main__":
    main()
