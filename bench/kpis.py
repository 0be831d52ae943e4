"""The full KPI set of one campaign, next to the one hand-written aggregate.

Builds, set-based (INSERT … SELECT from a recursive CTE) in a SQLite file,
1,000,000 customers, 5,000,000 orders and 3,000,000 messages (× ``--scale``):

* the campaign ``bench`` (rule ``bench_rule``, pool ``bench_pool``, 14-day
  window, January 2026): 30 % of the customers entered it, one in nine of
  them in the control arm; every other one was sent an SMS (90 % delivered,
  5 % clicked) and issued a coupon (15 % redeemed on an order);
* a competing campaign ``rival`` messaging a third of the customers, and
  messages of rules of no campaign, up to three messages per customer;
* five orders per customer over a year, some with the coupon's code;
* answers (2 % of the audience) and the campaign's manual cost.

Then, in the same run:

* baseline: ``kpis_repo.hand_written_conversion_revenue``, the one aggregate
  a person writes by hand: customers messaged, those of them who ordered in
  the window after their first message, and that revenue;
* project: ``CampaignService.kpis(refresh=True)``: every KPI of issue 14
  (reach, coupons, attribution by code and last touch across campaigns,
  costs with SMS segments, ROI, CAC, repurchase, cohorts, CLV, NPS, tasks,
  arms with uplift intervals, the daily series, targets) and the snapshot
  write; then one read of the snapshot (what a page does).

    python bench/kpis.py [--scale S] [--keep FILE]

The last line: ratio=R project=P baseline=B unit=s, where R = baseline time ÷
project time (higher is better; the target is R ≥ 0.2, and the project under
10 s at scale 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text

from engine.campaigns.kpis import kpis_to_json
from engine.campaigns.service import CampaignService
from engine.definitions.loader import load_paths
from engine.storage import campaigns_repo
from engine.storage.database import make_engine, make_session_factory, transaction
from engine.storage.kpis_repo import KpiQuery, hand_written_conversion_revenue
from engine.storage.migrate import upgrade
from engine.storage.times import to_db_time

NOW = datetime(2026, 6, 30, 2, 0, tzinfo=UTC)
STAMP = "2026-06-30 02:00:00.000000"
JAN = "2026-01-01 00:00:00.000000"


def _seq(n: int) -> str:
    return f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {n})"


def _at(base: str, seconds: str) -> str:
    return f"strftime('%Y-%m-%d %H:%M:%f000', '{base}', '+' || ({seconds}) || ' seconds')"


def build(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """The data set described in the module docstring (SQLite)."""
    member = "(n % 10 < 3)"
    control = "(n % 27 = 0)"
    entered = _at(JAN, "(n % 31) * 86400 + 7200")  # a day of January, 02:00
    with engine.begin() as c:
        c.execute(text(f"""INSERT INTO customers (id, name, created_at, updated_at, order_count, total_spent)
            {_seq(n)} SELECT n, 'c' || n, '{STAMP}', '{STAMP}', 5, 500 FROM seq"""))
        c.execute(text(f"""INSERT INTO journeys (rule_id, rule_version, subject_type, subject_id, period_key,
                step_index, status, entered_at, version, arm)
            {_seq(n)} SELECT 'bench_rule', 1, 'customer', n, 'p', 3, 'completed', {entered}, 1,
                   CASE WHEN {control} THEN 'control' ELSE 'a' END FROM seq WHERE {member}"""))
        # one campaign SMS per treated member; rival and filler messages up to 3 per customer
        msg_at = _at(JAN, "(n % 31) * 86400 + 10800")
        c.execute(text(f"""INSERT INTO outbox (channel, connector, recipient, body, idempotency_key, status,
                attempts, rule_id, created_at, sent_at, customer_id, delivery_status, delivered_at)
            {_seq(3 * n)}
            SELECT 'sms', 'sms_aliyun', 'r', printf('%.*c', 40 + (n % 60), 'x'), 'k' || n, 'sent', 1,
                   CASE WHEN k = 0 AND {member.replace('n', 'c')} AND NOT {control.replace('n', 'c')}
                        THEN 'bench_rule' WHEN k = 1 AND c % 3 = 1 THEN 'rival_rule' ELSE 'other_rule' END,
                   {msg_at.replace('(n % 31)', '((c + k * 5) % 31)')}, {msg_at.replace('(n % 31)', '((c + k * 5) % 31)')},
                   c, CASE WHEN n % 10 = 0 THEN NULL ELSE 'delivered' END,
                   CASE WHEN n % 10 = 0 THEN NULL ELSE {msg_at.replace('(n % 31)', '((c + k * 5) % 31)')} END
            FROM (SELECT n, (n - 1) / 3 + 1 AS c, (n - 1) % 3 AS k FROM seq)"""))
        c.execute(text("""INSERT INTO click_links (token, message_id, url, customer_id, rule_id, created_at,
                first_clicked_at)
            SELECT 't' || id, id, 'https://x', customer_id, rule_id, created_at, created_at FROM outbox
            WHERE rule_id = 'bench_rule' AND id % 20 = 7"""))
        c.execute(text("""INSERT INTO coupons (pool_id, code, customer_id, value, issued_at, status, redeemed_at)
            SELECT 'bench_pool', 'B' || customer_id, customer_id, 20, created_at,
                   CASE WHEN customer_id % 7 = 1 THEN 'redeemed' ELSE 'issued' END,
                   CASE WHEN customer_id % 7 = 1 THEN strftime('%Y-%m-%d %H:%M:%f000', created_at, '+2 days')
                   END
            FROM outbox WHERE rule_id = 'bench_rule'"""))
        # five orders per customer over a year; the first January order of a redeemer carries the code
        placed = _at("2025-07-01 00:00:00.000000", "((n * 2654435761) % 31536000)")
        c.execute(text(f"""INSERT INTO orders (customer_id, source, external_id, amount, discount, net_amount,
                refunded_amount, placed_at, status, coupon_code, created_at)
            {_seq(5 * n)}
            SELECT c, 'pos', 'o' || n, 100 + n % 200, 0, 100 + n % 200, 0,
                   CASE WHEN k = 0 AND (c % 7 < 2 OR (c % 7 = 2 AND NOT {control.replace('n', 'c')}))
                        THEN {_at(JAN, '(c % 31) * 86400 + 2 * 86400 + 7200')} ELSE {placed} END,
                   CASE WHEN n % 50 = 0 THEN 'refunded' ELSE 'paid' END,
                   CASE WHEN k = 0 AND c % 7 = 1 AND {member.replace('n', 'c')} AND NOT {control.replace('n', 'c')}
                        THEN 'B' || c END, '{STAMP}'
            FROM (SELECT n, (n - 1) / 5 + 1 AS c, (n - 1) % 5 AS k FROM seq)"""))
        c.execute(text(f"""INSERT INTO feedback (customer_id, campaign, score, received_at, source, dedupe_key)
            SELECT subject_id, 'bench', subject_id % 11, {_at(JAN, '86400 * 20')}, 'survey', 's' || subject_id
            FROM journeys WHERE rule_id = 'bench_rule' AND subject_id % 50 = 1"""))
    with engine.begin() as c:
        c.exec_driver_sql("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", help="build into (or reuse) this SQLite file")
    args = parser.parse_args()
    n = int(1_000_000 * args.scale)
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "kpis.sqlite"
    fresh = not path.exists()
    engine = make_engine(f"sqlite:///{path}")
    if fresh:
        upgrade(engine)
        t = time.perf_counter()
        build(engine, n)
        print(f"built {n:,} customers, {5 * n:,} orders, {3 * n:,} messages in {time.perf_counter() - t:.1f} s")
    sf = make_session_factory(engine)
    defs = load_paths([ROOT / "config" / "connectors"], relative_to=ROOT).raise_for_errors()
    stamp = to_db_time(NOW)
    with transaction(sf) as s:
        for cid, rule, pool in (("bench", "bench_rule", "bench_pool"), ("rival", "rival_rule", "rival_pool")):
            campaigns_repo.put(s, {"id": cid, "title": cid, "source": "definition", "budget": 100000,
                                   "starts_on": date(2026, 1, 1), "ends_on": date(2026, 1, 31), "attribution_days": 14,
                                   "targets": [{"metric": "new_customers", "target": "500"}],
                                   "materials": [{"category": "labour", "amount": "3000.00"}],
                                   "materials_cost": 3000},
                               {"rule": [rule], "pool": [pool]}, now=stamp)
    service = CampaignService(sf, tz="Asia/Shanghai", definitions=lambda: defs)
    view = service.get("bench", now=NOW)
    start, end = service.default_range(view)
    query = KpiQuery("bench", to_db_time(start), to_db_time(end), to_db_time(end), 14 * 86400)

    t = time.perf_counter()
    with transaction(sf) as s:
        messaged, ordered, revenue = hand_written_conversion_revenue(s, query)
    baseline_s = time.perf_counter() - t
    print(f"baseline (one hand-written aggregate): {messaged:,} messaged, {ordered:,} ordered, {revenue} revenue "
          f"in {baseline_s:.2f} s")

    t = time.perf_counter()
    kpis = service.kpis("bench", now=NOW, refresh=True)
    project_s = time.perf_counter() - t
    print(f"project (every KPI, stored as the snapshot): audience {kpis.audience:,}, sent {kpis.sent:,}, "
          f"redeemed {kpis.coupons_redeemed:,}/{kpis.coupons_issued:,}, attributed {kpis.attributed_orders:,} orders "
          f"{kpis.attributed_revenue} revenue, conversion {kpis.conversion_rate:.4f}, ROI {kpis.roi:.3f}, "
          f"uplift {kpis.uplift_conversion.estimate if kpis.uplift_conversion else None}, "
          f"{len(kpis.daily)} days, {len(kpis.cohorts)} cohorts in {project_s:.2f} s")
    t = time.perf_counter()
    again = service.kpis("bench", now=NOW)
    read_s = time.perf_counter() - t
    assert kpis_to_json(again) == kpis_to_json(kpis), "the snapshot reads back what was computed"
    print(f"page read of the snapshot: {read_s * 1000:.1f} ms")
    engine.dispose()
    print(f"ratio={baseline_s / project_s:.2f} project={project_s:.2f} baseline={baseline_s:.2f} unit=s")


if __name__ == "__main__":
    main()
