"""Campaign KPIs as set-based SQL (issue 14): one campaign, one time range.

Every figure here is an aggregate computed by the database over whole sets;
Python only receives totals and short lists (per day, per arm, per score,
per connector and message length). The statements build a few temporary
tables (``kp_*``) that the later statements join, so that each big table
(orders, outbox, journeys) is read once by an index:

* ``kp_members``: customers who entered one of the campaign's rules in the
  range, with the arm of their first journey and when they entered;
* ``kp_msgs``: the campaign's messages to customers created before the range
  ends, each with its touch time (delivered or first clicked, the earlier);
* ``kp_touch``: each customer's first touch by the campaign;
* ``kp_cand``: orders inside a touch's window carrying no campaign's code;
* ``kp_other``: the first touches of those customers by every other campaign
  (for last-touch attribution);
* ``kp_attr``: the orders attributed to the campaign (see docs/campaigns.md).

Times are naive UTC; money comes back as ``Decimal`` rounded to cents; days
are business-zone calendar days (a fixed UTC offset, ``offset_minutes``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.orm import Session

__all__ = ["ArmRow", "KpiQuery", "RawKpis", "compute_raw", "hand_written_conversion_revenue"]

CENT = Decimal("0.01")
COUNTED = "('paid', 'partially_refunded')"
#: Retention checkpoints of the cohort matrix, in days (1 week, 1, 3, 6 months).
RETENTION_DAYS = (7, 30, 90, 180)
#: How long after entering a customer's revenue counts for CLV.
CLV_DAYS = 365


@dataclass(frozen=True)
class KpiQuery:
    """What to compute: ``start``/``end`` bound the range (naive UTC, end
    exclusive), ``as_of`` is the moment of evaluation (≤ ``end``),
    ``window_seconds`` the campaign's attribution window."""

    campaign_id: str
    start: datetime
    end: datetime
    as_of: datetime
    window_seconds: int
    offset_minutes: int = 480
    #: Until when loyalty is observed (repurchase, retention, CLV, the arms'
    #: windows): later orders of the range's buyers still tell whether they
    #: came back. Default: ``as_of``.
    observed: datetime | None = None
    #: Also sum every counted order of the range (context for attributed
    #: revenue). Off by default: it reads every order of the range, the most
    #: expensive single statement at scale.
    with_total_revenue: bool = False


@dataclass(frozen=True)
class ArmRow:
    """One experiment arm's outcome: customers, converted customers (a counted
    order within the attribution window after entering), the sum and the sum
    of squares of each customer's revenue in that window, and the mean revenue
    per customer over ``CLV_DAYS`` after entering."""

    arm: str
    customers: int
    converted: int
    revenue: Decimal
    revenue_sq: float
    clv_revenue: Decimal


@dataclass(frozen=True)
class RawKpis:
    """The database's answers, before any ratio is formed (engine/campaigns/kpis.py does that)."""

    audience: int
    control: int
    control_reached: int
    messages: Mapping[str, int]
    reached: int
    clicked_customers: int
    replied: int
    coupons_issued: int
    coupons_redeemed: int
    redeemed_customers: int
    discount_total: Decimal
    redeem_seconds_avg: float | None
    issued_by_pool: Mapping[str, int]
    attributed_orders: int
    attributed_revenue: Decimal
    coupon_orders: int
    message_orders: int
    buyers: int
    converted_customers: int
    new_customers: int
    repurchased: int
    repurchase: Mapping[int, tuple[int, int]]
    cohorts: tuple[tuple[str, int, tuple[tuple[int, int], ...]], ...]
    nps_scores: Mapping[int, int]
    feedback_tags: Mapping[str, int]
    tasks: tuple[int, int, float | None]
    sends_by_length: tuple[tuple[str | None, str, int, int], ...]
    arms: tuple[ArmRow, ...]
    daily: tuple[tuple[str, int, int, Decimal], ...]
    total_revenue: Decimal | None


def _money(value: Any) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


class _Sql:
    """Dialect differences kept in one place: adding seconds to a time, a
    time's business-zone day and month, and seconds between two times."""

    def __init__(self, session: Session):
        self.pg = session.get_bind().dialect.name == "postgresql"

    def plus(self, moment: str, seconds: str) -> str:
        if self.pg:
            return f"({moment} + make_interval(secs => {seconds}))"
        # six fractional digits, as SQLAlchemy stores a DateTime on SQLite, so text comparison is exact
        return f"(strftime('%Y-%m-%d %H:%M:%f', {moment}, '+' || ({seconds}) || ' seconds') || '000')"

    def day(self, moment: str) -> str:
        if self.pg:
            return f"to_char({moment} + make_interval(mins => :offset), 'YYYY-MM-DD')"
        return f"strftime('%Y-%m-%d', {moment}, :offmod)"

    def month(self, moment: str) -> str:
        if self.pg:
            return f"to_char({moment} + make_interval(mins => :offset), 'YYYY-MM')"
        return f"strftime('%Y-%m', {moment}, :offmod)"

    def seconds(self, later: str, earlier: str) -> str:
        if self.pg:
            return f"EXTRACT(EPOCH FROM ({later} - {earlier}))"
        return f"((julianday({later}) - julianday({earlier})) * 86400.0)"

    def temp(self, name: str, query: str) -> str:
        if self.pg:
            return f"CREATE TEMPORARY TABLE {name} ON COMMIT DROP AS {query}"
        return f"CREATE TEMPORARY TABLE {name} AS {query}"


_TIMES = ("start", "end", "as_of", "observed")


class _Run:
    """One computation's statements, bound to its parameters."""

    def __init__(self, session: Session, q: KpiQuery):
        self.s, self.q, self.sql = session, q, _Sql(session)
        self.params = {"c": q.campaign_id, "start": q.start, "end": q.end, "as_of": q.as_of,
                       "observed": q.observed or q.as_of,
                       "win": q.window_seconds, "offset": q.offset_minutes,
                       "offmod": f"{q.offset_minutes:+d} minutes"}

    def _stmt(self, sql: str) -> Any:
        stmt = text(sql)
        used = set(stmt._bindparams)
        binds = [bindparam(n, type_=DateTime()) for n in _TIMES if n in used]
        return stmt.bindparams(*binds), {k: v for k, v in self.params.items() if k in used}

    def run(self, sql: str) -> None:
        stmt, params = self._stmt(sql)
        self.s.execute(stmt, params)

    def rows(self, sql: str) -> list[Any]:
        stmt, params = self._stmt(sql)
        return list(self.s.execute(stmt, params))

    def one(self, sql: str) -> Any:
        return self.rows(sql)[0]

    def drop(self) -> None:
        for name in ("kp_buyers", "kp_attr", "kp_other", "kp_cand", "kp_touch", "kp_msgs", "kp_members"):
            self.s.execute(text(f"DROP TABLE IF EXISTS {name}"))


_RULES = "(SELECT ref FROM campaign_links WHERE campaign_id = :c AND kind = 'rule')"
_POOLS = "(SELECT ref FROM campaign_links WHERE campaign_id = :c AND kind = 'pool')"


def _earlier(a: str, b: str) -> str:
    """The earlier of two nullable times (NULL only when both are)."""
    return f"CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} WHEN {a} < {b} THEN {a} ELSE {b} END"


def _build_tables(r: _Run) -> None:
    """The temporary tables. Each time bound a later join compares with is
    computed once here (``win_end``, ``clv_end``, ``until_at``), so the joins
    are plain index ranges; ``CROSS JOIN`` fixes SQLite's join order (the
    temporary tables have no statistics), and means an ordinary join to
    PostgreSQL."""
    sql = r.sql
    r.drop()
    r.run(sql.temp("kp_members", f"""
        SELECT g.customer_id, g.entered_at, g.arm, {sql.plus('g.entered_at', ':win')} AS win_end,
               {sql.plus('g.entered_at', str(CLV_DAYS * 86400))} AS clv_end
        FROM (SELECT j.subject_id AS customer_id, MIN(j.entered_at) AS entered_at, MIN(COALESCE(j.arm, '')) AS arm
              FROM journeys j
              WHERE j.subject_type = 'customer' AND j.rule_id IN {_RULES}
                AND j.entered_at >= :start AND j.entered_at < :end
              GROUP BY j.subject_id) g"""))
    r.run("CREATE INDEX kp_members_customer ON kp_members (customer_id)")
    click = "(SELECT MIN(cl.first_clicked_at) FROM click_links cl WHERE cl.message_id = m.id)"
    delivered = "CASE WHEN m.delivery_status = 'delivered' THEN m.delivered_at END"
    r.run(sql.temp("kp_msgs", f"""
        SELECT x.*, {_earlier('x.delivered_touch', 'x.clicked_at')} AS touch_at
        FROM (SELECT m.id, m.customer_id, m.channel, m.connector, m.status, m.delivery_status, m.created_at,
                     m.sent_at, LENGTH(COALESCE(m.body, '')) AS body_len, {delivered} AS delivered_touch,
                     {click} AS clicked_at
              FROM outbox m
              WHERE m.rule_id IN {_RULES} AND m.customer_id IS NOT NULL AND m.created_at < :end) x"""))
    r.run("CREATE INDEX kp_msgs_customer ON kp_msgs (customer_id)")
    r.run(sql.temp("kp_touch", f"""
        SELECT f.customer_id, f.touch_at, {sql.plus('f.touch_at', ':win')} AS until_at
        FROM (SELECT customer_id, MIN(touch_at) AS touch_at FROM kp_msgs WHERE touch_at IS NOT NULL
              GROUP BY customer_id) f"""))
    r.run("CREATE INDEX kp_touch_customer ON kp_touch (customer_id)")
    # orders in a touch's window, not carrying a code of any campaign's pool: candidates for last touch
    r.run(sql.temp("kp_cand", f"""
        SELECT o.id AS order_id, o.customer_id, o.net_amount AS amount, o.placed_at, t.touch_at
        FROM kp_touch t CROSS JOIN orders o
        WHERE o.customer_id = t.customer_id AND o.placed_at >= t.touch_at AND o.placed_at < t.until_at
          AND o.status IN {COUNTED} AND o.placed_at >= :start AND o.placed_at < :end AND o.placed_at < :as_of
          AND NOT EXISTS (SELECT 1 FROM coupons c3 JOIN campaign_links l3 ON l3.kind = 'pool' AND l3.ref = c3.pool_id
                          WHERE o.coupon_code IS NOT NULL AND c3.code = o.coupon_code)"""))
    other_click = "(SELECT MIN(cl.first_clicked_at) FROM click_links cl WHERE cl.message_id = m2.id)"
    other_delivered = "CASE WHEN m2.delivery_status = 'delivered' THEN m2.delivered_at END"
    r.run(sql.temp("kp_other", f"""
        SELECT y.campaign_id, y.customer_id, y.first_at,
               {sql.plus('y.first_at', 'c2.attribution_days * 86400')} AS until_at
        FROM (SELECT l2.campaign_id, m2.customer_id,
                     MIN({_earlier(other_delivered, other_click)}) AS first_at
              FROM (SELECT DISTINCT customer_id FROM kp_cand) k CROSS JOIN outbox m2
              JOIN campaign_links l2 ON l2.kind = 'rule' AND l2.ref = m2.rule_id AND l2.campaign_id <> :c
              WHERE m2.customer_id = k.customer_id
              GROUP BY l2.campaign_id, m2.customer_id) y
        JOIN campaigns c2 ON c2.id = y.campaign_id
        WHERE y.first_at IS NOT NULL"""))
    r.run("CREATE INDEX kp_other_customer ON kp_other (customer_id)")
    r.run(sql.temp("kp_attr", f"""
        SELECT o.id AS order_id, o.customer_id, o.net_amount AS amount, o.placed_at, 'coupon' AS via
        FROM coupons c CROSS JOIN orders o
        WHERE c.pool_id IN {_POOLS} AND o.coupon_code IS NOT NULL AND o.coupon_code = c.code
          AND o.status IN {COUNTED} AND o.placed_at >= :start AND o.placed_at < :end AND o.placed_at < :as_of
        UNION ALL
        SELECT k.order_id, k.customer_id, k.amount, k.placed_at, 'message'
        FROM kp_cand k
        WHERE NOT EXISTS (SELECT 1 FROM kp_other x
                          WHERE x.customer_id = k.customer_id AND x.first_at <= k.placed_at
                            AND k.placed_at < x.until_at
                            AND (x.first_at > k.touch_at OR (x.first_at = k.touch_at AND x.campaign_id < :c)))"""))
    r.run("CREATE INDEX kp_attr_customer ON kp_attr (customer_id)")


def compute_raw(session: Session, q: KpiQuery) -> RawKpis:
    """Run every KPI statement of one campaign over one range. Call inside a
    transaction: the temporary tables live until it ends (PostgreSQL) or are
    dropped here (SQLite)."""
    r = _Run(session, q)
    sql = r.sql
    try:
        _build_tables(r)
        members = r.one("SELECT COUNT(*), SUM(CASE WHEN arm = 'control' THEN 1 ELSE 0 END) FROM kp_members")
        in_range = "created_at >= :start"
        msg = r.one(f"""
            SELECT SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN delivery_status = 'delivered' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN status IN ('failed', 'dead') OR delivery_status IN ('failed', 'undelivered')
                            THEN 1 ELSE 0 END),
                   SUM(CASE WHEN clicked_at IS NOT NULL THEN 1 ELSE 0 END),
                   COUNT(DISTINCT CASE WHEN status = 'sent' THEN customer_id END),
                   COUNT(DISTINCT CASE WHEN clicked_at IS NOT NULL THEN customer_id END),
                   COUNT(*)
            FROM kp_msgs WHERE {in_range}""")
        control_reached = r.one(f"""
            SELECT COUNT(DISTINCT m.customer_id) FROM kp_msgs m
            JOIN kp_members mb ON mb.customer_id = m.customer_id AND mb.arm = 'control'
            WHERE m.status = 'sent' AND m.{in_range}""")[0]
        replied = r.one(f"""
            SELECT COUNT(DISTINCT f.message_id) FROM feedback f
            WHERE f.message_id IN (SELECT id FROM kp_msgs WHERE {in_range})""")[0]
        coupons = r.one(f"""
            SELECT COUNT(*), SUM(CASE WHEN redeemed_at IS NOT NULL AND redeemed_at < :as_of THEN 1 ELSE 0 END),
                   COUNT(DISTINCT CASE WHEN redeemed_at IS NOT NULL AND redeemed_at < :as_of THEN customer_id END),
                   SUM(CASE WHEN redeemed_at IS NOT NULL AND redeemed_at < :as_of THEN value ELSE 0 END),
                   AVG(CASE WHEN redeemed_at IS NOT NULL AND redeemed_at < :as_of
                            THEN {sql.seconds('redeemed_at', 'issued_at')} END)
            FROM coupons WHERE pool_id IN {_POOLS} AND issued_at >= :start AND issued_at < :end""")
        by_pool = {p: int(n) for p, n in r.rows(f"""
            SELECT pool_id, COUNT(*) FROM coupons
            WHERE pool_id IN {_POOLS} AND issued_at >= :start AND issued_at < :end GROUP BY pool_id""")}
        attr = r.one("""
            SELECT COUNT(*), SUM(amount), SUM(CASE WHEN via = 'coupon' THEN 1 ELSE 0 END),
                   SUM(CASE WHEN via = 'message' THEN 1 ELSE 0 END), COUNT(DISTINCT customer_id)
            FROM kp_attr""")
        converted = r.one(f"""
            SELECT COUNT(DISTINCT a.customer_id) FROM kp_attr a
            WHERE a.customer_id IN (SELECT customer_id FROM kp_msgs WHERE status = 'sent' AND {in_range})""")[0]
        # each buyer once: the first attributed order, the next counted order after it (until
        # ``observed``), and whether the first was their first counted order ever
        r.run(sql.temp("kp_buyers", f"""
            SELECT x.*, {sql.month('x.first_at')} AS cohort, {sql.seconds(':observed', 'x.first_at')} AS age_s,
                   {sql.seconds('x.next_at', 'x.first_at')} AS gap_s
            FROM (SELECT b.customer_id, b.first_at,
                         (SELECT MIN(o.placed_at) FROM orders o WHERE o.customer_id = b.customer_id
                          AND o.status IN {COUNTED} AND o.placed_at > b.first_at AND o.placed_at < :observed) AS next_at,
                         CASE WHEN EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = b.customer_id
                                           AND o.status IN {COUNTED} AND o.placed_at < b.first_at)
                              THEN 0 ELSE 1 END AS is_new
                  FROM (SELECT customer_id, MIN(placed_at) AS first_at FROM kp_attr GROUP BY customer_id) b) x"""))
        new, repurchased = r.one("SELECT SUM(is_new), SUM(CASE WHEN next_at IS NOT NULL THEN 1 ELSE 0 END) "
                                 "FROM kp_buyers")
        repurchase: dict[int, tuple[int, int]] = {}
        cohort_cols = []
        for days in RETENTION_DAYS:
            span = days * 86400
            cohort_cols.append(f"SUM(CASE WHEN age_s >= {span} THEN 1 ELSE 0 END), "
                               f"SUM(CASE WHEN age_s >= {span} AND gap_s <= {span} THEN 1 ELSE 0 END)")
        cohort_rows = r.rows(f"""
            SELECT cohort, COUNT(*), {', '.join(cohort_cols)} FROM kp_buyers GROUP BY cohort ORDER BY 1""")
        cohorts = []
        totals = {d: [0, 0] for d in RETENTION_DAYS}
        for row in cohort_rows:
            cells = []
            for i, days in enumerate(RETENTION_DAYS):
                matured_n, kept_n = int(row[2 + 2 * i] or 0), int(row[3 + 2 * i] or 0)
                cells.append((matured_n, kept_n))
                totals[days][0] += matured_n
                totals[days][1] += kept_n
            cohorts.append((str(row[0]), int(row[1]), tuple(cells)))
        for days in (30, 90):
            repurchase[days] = (totals[days][0], totals[days][1])
        for days in RETENTION_DAYS:
            repurchase.setdefault(days, (totals[days][0], totals[days][1]))
        # a message's feedback names its rule's ``campaign:``, else the rule id (engine/feedback/service.py)
        feedback_where = f"""(f.campaign = :c OR f.campaign IN {_RULES})
                             AND f.received_at >= :start AND f.received_at < :end AND f.received_at < :as_of"""
        scores = {int(s): int(n) for s, n in r.rows(f"""
            SELECT f.score, COUNT(*) FROM feedback f WHERE f.score IS NOT NULL AND {feedback_where}
            GROUP BY f.score""")}
        tags: dict[str, int] = {}
        for (raw,) in r.rows(f"SELECT f.tags FROM feedback f WHERE f.tags IS NOT NULL AND {feedback_where}"):
            for tag in (raw if isinstance(raw, list) else _json_list(raw)):
                tags[str(tag)] = tags.get(str(tag), 0) + 1
        task = r.one(f"""
            SELECT COUNT(*), SUM(CASE WHEN response_seconds IS NOT NULL THEN 1 ELSE 0 END), AVG(response_seconds)
            FROM tasks WHERE kind = 'rule' AND rule_id IN {_RULES} AND created_at >= :start AND created_at < :end""")
        lengths = tuple((c, ch, int(n), int(k)) for c, ch, n, k in r.rows(f"""
            SELECT connector, channel, body_len, COUNT(*) FROM kp_msgs WHERE status = 'sent' AND {in_range}
            GROUP BY connector, channel, body_len"""))
        arms = _arms(r)
        daily = _daily(r)
        total_revenue = None
        if q.with_total_revenue:
            total_revenue = _money(r.one(f"""
                SELECT SUM(net_amount) FROM orders WHERE status IN {COUNTED}
                AND placed_at >= :start AND placed_at < :end AND placed_at < :as_of""")[0])
    finally:
        r.drop()
    return RawKpis(
        audience=int(members[0] or 0), control=int(members[1] or 0), control_reached=int(control_reached or 0),
        messages={"sent": int(msg[0] or 0), "delivered": int(msg[1] or 0), "failed": int(msg[2] or 0),
                  "clicked": int(msg[3] or 0), "written": int(msg[6] or 0)},
        reached=int(msg[4] or 0), clicked_customers=int(msg[5] or 0), replied=int(replied or 0),
        coupons_issued=int(coupons[0] or 0), coupons_redeemed=int(coupons[1] or 0),
        redeemed_customers=int(coupons[2] or 0), discount_total=_money(coupons[3]),
        redeem_seconds_avg=float(coupons[4]) if coupons[4] is not None else None, issued_by_pool=by_pool,
        attributed_orders=int(attr[0] or 0), attributed_revenue=_money(attr[1]), coupon_orders=int(attr[2] or 0),
        message_orders=int(attr[3] or 0), buyers=int(attr[4] or 0), converted_customers=int(converted or 0),
        new_customers=int(new or 0), repurchased=int(repurchased or 0), repurchase=repurchase,
        cohorts=tuple(cohorts), nps_scores=scores, feedback_tags=tags,
        tasks=(int(task[0] or 0), int(task[1] or 0), float(task[2]) if task[2] is not None else None),
        sends_by_length=lengths, arms=arms, daily=daily, total_revenue=total_revenue,
    )


def _json_list(raw: Any) -> list[Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def _arms(r: _Run) -> tuple[ArmRow, ...]:
    """Per arm: customers, converted within the window after entering, the
    window revenue's sum and sum of squares per customer, and CLV revenue.
    Grouped by the member's id, which ``kp_members``' index already orders."""
    rows = r.rows(f"""
        SELECT pc.arm, COUNT(*), SUM(CASE WHEN pc.n > 0 THEN 1 ELSE 0 END), SUM(pc.rev), SUM(pc.rev * pc.rev),
               SUM(pc.clv)
        FROM (SELECT MIN(mb.arm) AS arm,
                     SUM(CASE WHEN o.placed_at < mb.win_end THEN 1 ELSE 0 END) AS n,
                     COALESCE(SUM(CASE WHEN o.placed_at < mb.win_end THEN o.net_amount ELSE 0 END), 0) AS rev,
                     COALESCE(SUM(o.net_amount), 0) AS clv
              FROM kp_members mb
              LEFT JOIN orders o ON o.customer_id = mb.customer_id AND o.status IN {COUNTED}
                   AND o.placed_at >= mb.entered_at AND o.placed_at < mb.clv_end AND o.placed_at < :observed
              GROUP BY mb.customer_id) pc
        GROUP BY pc.arm ORDER BY pc.arm""")
    return tuple(ArmRow(str(a or ""), int(n), int(conv or 0), _money(rev), float(sq or 0), _money(clv))
                 for a, n, conv, rev, sq, clv in rows)


def _daily(r: _Run) -> tuple[tuple[str, int, int, Decimal], ...]:
    """(day, messages sent, coupons redeemed, attributed revenue) per business
    day. The database groups by UTC hour (a prefix of the stored time, no
    date function per row); the few hundred hours become business days here.
    A zone whose offset is not whole hours is grouped by day in SQL."""
    sql = r.sql
    whole_hours = r.q.offset_minutes % 60 == 0
    if not whole_hours:
        bucket = sql.day
    elif sql.pg:
        def bucket(col):
            return f"to_char({col}, 'YYYY-MM-DD HH24')"
    else:
        def bucket(col):
            return f"substr({col}, 1, 13)"
    rows = r.rows(f"""
        SELECT d, SUM(sends), SUM(redemptions), SUM(revenue) FROM (
            SELECT {bucket('sent_at')} AS d, 1 AS sends, 0 AS redemptions, 0 AS revenue FROM kp_msgs
            WHERE status = 'sent' AND sent_at >= :start AND sent_at < :end AND sent_at < :as_of
            UNION ALL
            SELECT {bucket('redeemed_at')}, 0, 1, 0 FROM coupons
            WHERE pool_id IN {_POOLS} AND redeemed_at >= :start AND redeemed_at < :end AND redeemed_at < :as_of
            UNION ALL
            SELECT {bucket('placed_at')}, 0, 0, amount FROM kp_attr) u
        GROUP BY d ORDER BY d""")
    days: dict[str, list[Any]] = {}
    shift = timedelta(minutes=r.q.offset_minutes)
    for d, sends, redemptions, revenue in rows:
        day = str(d) if not whole_hours else (datetime.strptime(str(d), "%Y-%m-%d %H") + shift).strftime("%Y-%m-%d")
        cell = days.setdefault(day, [0, 0, Decimal(0)])
        cell[0] += int(sends or 0)
        cell[1] += int(redemptions or 0)
        cell[2] += Decimal(str(revenue or 0))
    return tuple((day, s, k, _money(v)) for day, (s, k, v) in sorted(days.items()))


def hand_written_conversion_revenue(session: Session, q: KpiQuery) -> tuple[int, int, Decimal]:
    """The benchmark's baseline: the one aggregate a person would write by
    hand for a campaign's conversion and revenue (customers messaged, those
    of them who ordered within the window after their first sent message, and
    that revenue), with no attribution rules, cohorts or costs."""
    sql = _Sql(session)
    stmt = text(f"""
        SELECT COUNT(DISTINCT f.customer_id), COUNT(DISTINCT o.customer_id), SUM(o.net_amount)
        FROM (SELECT customer_id, MIN(sent_at) AS first_at FROM outbox
              WHERE rule_id IN {_RULES} AND status = 'sent' AND created_at >= :start AND created_at < :end
              GROUP BY customer_id) f
        LEFT JOIN orders o ON o.customer_id = f.customer_id AND o.status IN {COUNTED}
             AND o.placed_at >= f.first_at AND o.placed_at < {sql.plus('f.first_at', ':win')}""").bindparams(
        bindparam("start", type_=DateTime()), bindparam("end", type_=DateTime()))
    row = session.execute(stmt, {"c": q.campaign_id, "start": q.start, "end": q.end, "win": q.window_seconds}).one()
    return int(row[0] or 0), int(row[1] or 0), _money(row[2])
