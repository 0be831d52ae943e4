"""A scheduled rule's entry and first steps in a handful of SQL statements.

A win-back run enters 90,000 customers who each get a coupon, an SMS and a
wait. Entering them, then claiming and walking each journey in Python, costs
several times the bare ``INSERT … SELECT`` of the entry; here the whole first
segment (coupons, sends to the customer, tags, up to the first ``wait`` or the
end) is plain SQL over the rows the entry just inserted:

1. the entry ``INSERT … SELECT … ON CONFLICT DO NOTHING`` writes each journey
   directly in its state *after* the segment (waiting, due when the wait ends)
   when the customer is "plain": their time zone is known not to be in quiet
   hours and no frequency cap could bite. Everyone else enters at the first
   step, due now, exactly as :func:`automation_repo.enter_customers` does, and
   the per-journey path (which defers, caps and counts precisely) takes them;
2. one ``INSERT … SELECT`` per coupon step (codes drawn in the database);
3. one ``INSERT … SELECT`` per send, the message rendered by string
   concatenation of the template's text and the customer's columns (only
   templates that are text and ``{{ name.attr }}`` get here), consent and
   address checked by the WHERE clause, ``ON CONFLICT DO NOTHING`` on the
   idempotency key;
4. one statement per tag added or removed.

"The rows the entry just inserted" are those of the rule with an id above the
largest id before the entry, read while holding the rule's entry lock (the
SQLite write lock, or a PostgreSQL transaction-level advisory lock), so a
second scheduler or a repeated run never issues anything twice. Everything is
in the caller's transaction: a crash loses the whole run, which is then repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Integer,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from engine.experiments import Assignment
from engine.storage import outbox_repo
from engine.storage.automation_repo import entry_where
from engine.storage.bulk import dialect_name, insert_ignore_from_select
from engine.storage.experiment_sql import arm_column
from engine.storage.models import Customer, Journey, OutboxMessage
from engine.storage.results import affected

_j: Table = Journey.__table__  # type: ignore[assignment]
_cust: Table = Customer.__table__  # type: ignore[assignment]

__all__ = ["CODE_ALPHABET", "customer_id_span", "Piece", "SetArm", "SetCoupon", "SetPlan", "SetResult", "SetSend", "TEXT_COLUMNS",
           "enter_and_start"]

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols, no 0/O, 1/I: the coupon codes of every path
CODE_LENGTH = 10  # 3 + 3 + 3 + 1 symbols in SQLite's code expression, 10 bytes of a UUID in PostgreSQL's
_TRIPLES = bytes("".join(a + b + c for a in CODE_ALPHABET for b in CODE_ALPHABET for c in CODE_ALPHABET), "ascii")

#: Customer columns a template may read here: as Jinja prints them, ``str()``
#: of the value, which for text and integers is what ``CAST(… AS TEXT)`` gives.
TEXT_COLUMNS = frozenset({"id", "name", "phone", "email", "gender", "city", "level", "rfm_segment", "external_id",
                          "timezone", "order_count", "rfm_recency_days", "rfm_r", "rfm_f", "rfm_m",
                          "account_manager_id"})

#: What Python's ``str.strip()`` removes (Unicode White_Space), for rendered bodies.
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200b)) \
    + "\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True)
class Piece:
    """One part of a rendered text: ``text`` (a literal), ``customer`` (a
    column of :data:`TEXT_COLUMNS`; NULL prints ``None``, as Jinja does),
    ``code`` (the code of the coupon in scope), ``journey`` (the journey id)."""

    kind: str
    value: str = ""


@dataclass(frozen=True)
class SetCoupon:
    pool_id: str
    prefix: str
    value: Any
    expires_at: datetime | None         # naive UTC


@dataclass(frozen=True)
class SetSend:
    """An SMS to the customer. ``params``: each provider parameter as the
    alternatives tried in order (the first non-NULL wins, else ``''``)."""

    step_id: str
    channel: str
    connector: str
    template_id: str
    delivery_class: str
    needs_consent: bool
    body: tuple[Piece, ...]
    strip: str                          # "" (the ends are text without spaces), "ltrim", "rtrim" or "trim"
    params: tuple[tuple[str, tuple[Piece, ...]], ...]
    payload: dict[str, Any]             # constant payload keys (template, connector_type, template_code …)
    params_const: dict[str, str]        # constant params (sign_name)
    coupon_pool: str | None             # the pool of the coupon whose code is in scope
    key_prefix: str = ""                # the idempotency key is key_prefix || customer id || key_suffix
    key_suffix: str = ""


@dataclass(frozen=True)
class SetArm:
    """The coupons and sends of the segment for the journeys of one experiment
    arm (``key`` None: every journey; the rule has no experiment)."""

    key: str | None
    coupons: tuple[SetCoupon, ...]
    sends: tuple[SetSend, ...]


@dataclass(frozen=True)
class SetPlan:
    """What the first segment of a rule does to a plain customer, and what makes one plain.

    ``arms``: the coupons and sends per arm that gets messages (a control
    group has none, so it has no entry); tags are everyone's."""

    rule_id: str
    start_pc: int
    start_step: str | None
    arms: tuple[SetArm, ...]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    final_pc: int
    final_step: str | None
    final_status: str
    final_due: datetime | None          # naive UTC
    final_state: dict[str, Any] | None
    zone: str | None                    # plain only in this zone (or none given); None: any zone
    caps: tuple[tuple[str, str, int, datetime], ...] = ()  # (channel, class, allowed before, since)
    no_future_purchase: bool = False    # plain only without a purchase after now (``ordered_since_entry`` exits)
    assignment: Assignment | None = None  # the rule's experiment: each journey's arm


@dataclass
class SetResult:
    entered: int = 0
    plain: int = 0
    sent: int = 0
    skipped_consent: int = 0
    skipped_other: int = 0
    by_step: dict[str, int] = field(default_factory=dict)


def customer_id_span(session: Session) -> tuple[int, int] | None:
    """(smallest, largest) customer id, or None without customers (chunks of a run)."""
    # Two subqueries: SQLite answers a lone min() or max() from the index, not both in one SELECT.
    row = session.execute(text("SELECT (SELECT min(id) FROM customers), (SELECT max(id) FROM customers)")).one()
    return None if row[0] is None else (int(row[0]), int(row[1]))


def _lock_and_mark(session: Session, rule_id: str) -> tuple[int, int]:
    """Take the rule's entry lock and return the largest journey and coupon ids."""
    if dialect_name(session) == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"promoflow.entry:{rule_id}"})
    else:
        # A write statement takes SQLite's write lock (even when it changes
        # nothing), and holds it to the end of the transaction; reads after it
        # see the latest data and nobody else writes until we commit.
        session.execute(text("UPDATE journeys SET version = version WHERE id = -1"))
    row = session.execute(text("SELECT (SELECT coalesce(max(id), 0) FROM journeys), "
                               "(SELECT coalesce(max(id), 0) FROM coupons)")).one()
    return int(row[0]), int(row[1])


def _plain_clause(plan: SetPlan, db_now: datetime) -> ColumnElement[bool] | None:
    """What makes a customer plain (None: everyone is)."""
    parts: list[ColumnElement[bool]] = []
    if plan.zone is not None:
        parts.append(or_(_cust.c.timezone.is_(None), _cust.c.timezone.in_(["", plan.zone])))
    if plan.no_future_purchase:
        parts.append(or_(_cust.c.last_purchase_at.is_(None), _cust.c.last_purchase_at <= db_now))
    outbox = OutboxMessage.__table__
    for channel, dclass, allowed, since in plan.caps:
        recent = (select(func.count()).where(outbox.c.customer_id == _cust.c.id, outbox.c.channel == channel,
                                             outbox.c.delivery_class == dclass, outbox.c.created_at >= since)
                  .correlate(_cust).scalar_subquery())
        parts.append(recent < allowed)
    return and_(*parts) if parts else None


def _enter(session: Session, plan: SetPlan, where: list[ColumnElement[bool]], *, rule_version: int,
           period_key: str, db_now: datetime, limit: int | None, mx: int) -> int:
    """Insert the audience's journeys, the plain ones already past the segment.

    The plain test (an outbox probe per customer for caps) runs once per row:
    it picks the step index, every other column is written as for a plain
    journey, and one UPDATE over the new rows still at the first step (few)
    then puts them back to the state :func:`automation_repo.enter_customers` writes."""
    plain = _plain_clause(plan, db_now)
    state: Any = null()
    if plan.final_state is not None:
        state = literal(json.dumps(plan.final_state), String)
        if dialect_name(session) == "postgresql":
            state = cast(state, JSONB)
    step_index: Any = literal(plan.final_pc, Integer)
    if plain is not None:
        step_index = case((plain, step_index), else_=literal(plan.start_pc, Integer))
    sel = select(
        literal(plan.rule_id, String), literal(rule_version, Integer), literal("customer", String), _cust.c.id,
        literal(period_key, String), step_index, literal(plan.final_step, String),
        literal(plan.final_status, String),
        literal(plan.final_due, DateTime) if plan.final_due else null(), state,
        literal(db_now, DateTime), literal(1, Integer), arm_column(plan.assignment, "customers.id"),
    ).where(*where)
    if limit is not None:
        sel = sel.order_by(_cust.c.id).limit(limit)
    columns = ["rule_id", "rule_version", "subject_type", "subject_id", "period_key", "step_index", "step_id",
               "status", "due_at", "state", "entered_at", "version", "arm"]
    entered = insert_ignore_from_select(session, _j, columns, sel)
    if entered and plain is not None:
        session.execute(
            _typed("UPDATE journeys SET step_id = :step, status = 'active', due_at = :now, state = NULL "
                   "WHERE id > :mx AND rule_id = :rule AND step_index = :start"),
            {"step": plan.start_step, "now": db_now, "mx": mx, "rule": plan.rule_id, "start": plan.start_pc})
    return entered


def _code_sql(dialect: str) -> str:
    """A random code of the coupon alphabet, per row (``:alpha`` and ``:triples`` bound)."""
    if dialect == "sqlite":
        # random(): SQLite's PRNG, seeded from the operating system's randomness.
        # Three symbols per draw from a table of all 32³ triples (bound as a
        # blob, so substr indexes bytes): 15 random bits each, plus one symbol,
        # 50 bits in all, at less than half the cost of ten single draws.
        return " || ".join(["substr(:triples, 1 + 3 * (random() & 32767), 3)"] * 3) \
            + " || substr(:alpha, 1 + (random() & 31), 1)"
    # gen_random_uuid() draws from the server's strong random source; bytes 6
    # and 8 carry the UUID version and variant, the other fourteen are random.
    # As on SQLite, three symbols per 15 random bits (bytes 0-5) from the table
    # of triples, bound as bytea (substr indexes bytes, in constant time), and
    # the last symbol from byte 9 (the third symbol of triple i is alphabet[i & 31]):
    # 50 bits, four substr calls instead of ten.
    triples = [f"substr(:triples, 1 + 3 * (((get_byte(r.b, {i}) << 8) | get_byte(r.b, {i + 1})) & 32767), 3)"
               for i in (0, 2, 4)]
    last = "substr(:triples, 3 + 3 * (get_byte(r.b, 9) & 31), 1)"
    return f"encode({' || '.join([*triples, last])}, 'escape')"


def _count(session: Session, sql: str, params: dict[str, Any]) -> int:
    return int(session.execute(text(sql), params).scalar() or 0)


def _issue(session: Session, plan: SetPlan, coupon: SetCoupon, plain_sql: str, params: dict[str, Any],
           want: int, db_now: datetime) -> None:
    dialect = dialect_name(session)
    lateral = " CROSS JOIN LATERAL (SELECT uuid_send(gen_random_uuid()) AS b WHERE j.id IS NOT NULL) r" \
        if dialect == "postgresql" else ""
    base = (f"INSERT INTO coupons (pool_id, code, customer_id, value, issued_at, expires_at, journey_id, status) "
            f"SELECT :pool, :prefix || {_code_sql(dialect)}, j.subject_id, :value, :issued, :expires, j.id, 'issued' "
            f"FROM journeys j{lateral} WHERE {plain_sql}")
    missing = (" AND NOT EXISTS (SELECT 1 FROM coupons k WHERE k.journey_id = j.id AND k.pool_id = :pool "
               "AND k.id > :mxc)")
    args = {**params, "pool": coupon.pool_id, "prefix": coupon.prefix, "value": coupon.value, "issued": db_now,
            "expires": coupon.expires_at, "alpha": CODE_ALPHABET}
    args["triples"] = _TRIPLES
    stmt = _typed(base + " ON CONFLICT DO NOTHING")
    done = affected(session.execute(stmt.execution_options(preserve_rowcount=True), args))
    for _attempt in range(5):
        if done >= want:
            return
        # A code clashed with an existing one (50 bits: rare): draw again for those without a coupon.
        stmt = _typed(base + missing + " ON CONFLICT DO NOTHING")
        done += affected(session.execute(stmt.execution_options(preserve_rowcount=True), args))
    if done < want:
        raise RuntimeError("coupon codes clashed five times in a row")


def _typed(sql: str) -> Any:
    """``text(sql)`` with its time parameters typed (naive UTC DateTime on both backends)."""
    from sqlalchemy import BindParameter, bindparam

    stmt = text(sql)
    from sqlalchemy import Numeric

    times: list[BindParameter[Any]] = [bindparam(n, type_=DateTime()) for n in ("issued", "expires", "now") if f":{n}" in sql]
    if ":value" in sql:
        times.append(bindparam("value", type_=Numeric(14, 2)))
    return stmt.bindparams(*times) if times else stmt


def _bind(name: str, dialect: str) -> str:
    """A text parameter (typed on PostgreSQL, which cannot deduce one used twice)."""
    return f"CAST(:{name} AS TEXT)" if dialect == "postgresql" else f":{name}"


def _piece_sql(piece: Piece, *, code: str, jid: str, binds: dict[str, Any], null_as: str | None,
               dialect: str) -> str:
    if piece.kind == "text":
        name = f"t{len(binds)}"
        binds[name] = piece.value
        return _bind(name, dialect)
    if piece.kind == "customer":
        column = f"CAST(c.{piece.value} AS TEXT)"
        return f"coalesce({column}, 'None')" if null_as == "None" else column
    if piece.kind == "code":
        return code
    if piece.kind == "journey":
        return f"CAST({jid} AS TEXT)"
    raise ValueError(f"unknown piece {piece.kind}")


def _send(session: Session, plan: SetPlan, send: SetSend, plain_sql: str, params: dict[str, Any], *,
          period_key: str, db_now: datetime) -> int:
    dialect = dialect_name(session)
    if send.coupon_pool is not None:
        src, jid, cid, code = "coupons k", "k.journey_id", "k.customer_id", "k.code"
        where = "k.id > :mxc AND k.pool_id = :cpool"
        params = {**params, "cpool": send.coupon_pool}
    else:
        src, jid, cid, code = "journeys j", "j.id", "j.subject_id", "''"
        where = plain_sql
    binds: dict[str, Any] = {}
    body = " || ".join(_piece_sql(p, code=code, jid=jid, binds=binds, null_as="None", dialect=dialect) for p in send.body) or "''"
    if send.strip:
        binds["ws"] = _WHITESPACE
        func_name = "btrim" if send.strip == "trim" and dialect == "postgresql" else send.strip
        body = f"{func_name}({body}, {_bind('ws', dialect)})"
    obj = "json_object" if dialect == "sqlite" else "jsonb_build_object"
    pairs: list[str] = []
    for name, alternatives in send.params:
        binds[f"pn{len(binds)}"] = name
        key = _bind(f"pn{len(binds) - 1}", dialect)
        values = [_piece_sql(p, code=code, jid=jid, binds=binds, null_as=None, dialect=dialect) for p in alternatives]
        values.append("''")
        pairs.append(f"{key}, coalesce({', '.join(values)})")
    for name, value in send.params_const.items():
        binds[f"pn{len(binds)}"] = name
        binds[f"pv{len(binds)}"] = value
        pairs.append(f"{_bind(f'pn{len(binds) - 2}', dialect)}, {_bind(f'pv{len(binds) - 1}', dialect)}")
    payload_pairs = []
    for name, value in send.payload.items():
        binds[f"yn{len(binds)}"] = name
        binds[f"yv{len(binds)}"] = value
        payload_pairs.append(f"{_bind(f'yn{len(binds) - 2}', dialect)}, {_bind(f'yv{len(binds) - 1}', dialect)}")
    if pairs:
        binds["params_key"] = "params"
        payload_pairs.append(f"{_bind('params_key', dialect)}, {obj}({', '.join(pairs)})")
    payload = f"{obj}({', '.join(payload_pairs)})"
    b = lambda name: _bind(name, dialect)  # noqa: E731
    consent = (f" AND EXISTS (SELECT 1 FROM consents s WHERE s.customer_id = c.id AND s.channel = {b('channel')} "
               "AND s.granted)") if send.needs_consent else ""
    select_sql = (
        f"SELECT {b('channel')}, {b('connector')}, c.phone, NULL, {body}, {payload}, "
        f"{b('kp')} || CAST({cid} AS TEXT) || {b('ks')}, "
        f"{b('dclass')}, 'queued', 0, :now, {b('rule')}, {jid}, :now, {cid}, {b('template')} "
        f"FROM {src} JOIN customers c ON c.id = {cid} "
        f"WHERE {where} AND c.phone IS NOT NULL AND c.phone <> ''{consent}"
    )
    args = {**params, **binds, "channel": send.channel, "connector": send.connector, "kp": send.key_prefix,
            "ks": send.key_suffix, "dclass": send.delivery_class, "now": db_now, "rule": plan.rule_id,
            "template": send.template_id}
    return outbox_repo.insert_selected(session, select_sql, args)


def enter_and_start(
    session: Session, plan: SetPlan, *, rule_version: int, audience: Any, segments: Any, now: datetime,
    db_now: datetime, period_key: str, rolling_since: datetime | None = None, date_filter: Any = None,
    limit: int | None = None, id_range: tuple[int, int] | None = None,
) -> SetResult:
    """Enter the audience (as :func:`automation_repo.enter_customers`) and run
    ``plan``'s segment for the plain customers, in the caller's transaction
    (see the module notes). Journeys of customers who are not plain enter at
    the first step, due at ``db_now``, for the per-journey path. ``id_range``
    (lo, hi): only customers with lo <= id < hi (one chunk of a big run)."""
    result = SetResult()
    mx, mxc = _lock_and_mark(session, plan.rule_id)
    where = entry_where(session, rule_id=plan.rule_id, audience=audience, segments=segments, now=now,
                        rolling_since=rolling_since, date_filter=date_filter)
    if id_range is not None:
        where += [_cust.c.id >= id_range[0], _cust.c.id < id_range[1]]
    result.entered = _enter(session, plan, where, rule_version=rule_version, period_key=period_key, db_now=db_now,
                            limit=limit, mx=mx)
    if not result.entered:
        return result
    plain_sql = "j.id > :mx AND j.rule_id = :rule_id AND j.step_index = :final_pc AND j.status = :final_status"
    params: dict[str, Any] = {"mx": mx, "mxc": mxc, "rule_id": plan.rule_id, "final_pc": plan.final_pc,
                              "final_status": plan.final_status}
    if plan.zone is None and not plan.caps and not plan.no_future_purchase:
        result.plain = result.entered
    else:
        result.plain = _count(session, f"SELECT count(*) FROM journeys j WHERE {plain_sql}", params)
    if not result.plain:
        return result
    for arm in plan.arms:
        arm_sql, arm_params, arm_plain = plain_sql, params, result.plain
        if arm.key is not None:
            # The arm's coupons are the ones issued after this mark: arms run one after another.
            mark = _count(session, "SELECT coalesce(max(id), 0) FROM coupons", {})
            arm_sql, arm_params = plain_sql + " AND j.arm = :arm", {**params, "arm": arm.key, "mxc": mark}
            arm_plain = _count(session, f"SELECT count(*) FROM journeys j WHERE {arm_sql}", arm_params)
            if not arm_plain:
                continue
        for coupon in arm.coupons:
            _issue(session, plan, coupon, arm_sql, arm_params, arm_plain, db_now)
        for send in arm.sends:
            sent = _send(session, plan, send, arm_sql, arm_params, period_key=period_key, db_now=db_now)
            result.sent += sent
            result.by_step[send.step_id] = result.by_step.get(send.step_id, 0) + sent
            if sent < arm_plain:
                consent = ("EXISTS (SELECT 1 FROM consents s WHERE s.customer_id = c.id AND s.channel = :channel "
                           "AND s.granted)") if send.needs_consent else "1 = 1"
                row = session.execute(text(
                    f"SELECT sum(CASE WHEN {consent} THEN 0 ELSE 1 END), "
                    f"sum(CASE WHEN {consent} AND (c.phone IS NULL OR c.phone = '') THEN 1 ELSE 0 END) "
                    f"FROM journeys j JOIN customers c ON c.id = j.subject_id WHERE {arm_sql}"),
                    {**arm_params, "channel": send.channel}).one()
                result.skipped_consent += int(row[0] or 0)
                result.skipped_other += int(row[1] or 0)
    for tag in plan.add_tags:
        session.execute(text(
            f"INSERT INTO customer_tags (customer_id, tag) SELECT j.subject_id, :tag FROM journeys j "
            f"WHERE {plain_sql} ON CONFLICT DO NOTHING"), {**params, "tag": tag})
    for tag in plan.remove_tags:
        session.execute(text(
            f"DELETE FROM customer_tags WHERE tag = :tag AND customer_id IN "
            f"(SELECT j.subject_id FROM journeys j WHERE {plain_sql})"), {**params, "tag": tag})
    return result

