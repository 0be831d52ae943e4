"""SQL of the customer import: identity lookups, batched upserts, and the
set-based recomputation of order aggregates and RFM scores.

Everything runs in the caller's transaction and takes naive UTC times.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    Table,
    any_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert, insert_ignore
from engine.storage.models import COUNTED_ORDER_STATUSES, Consent, Customer, CustomerTag, Order
from engine.storage.orders_repo import one_of
from engine.storage.workflows_repo import Db, Prepared

_cust: Table = Customer.__table__  # type: ignore[assignment]
_orders: Table = Order.__table__  # type: ignore[assignment]
_tags: Table = CustomerTag.__table__  # type: ignore[assignment]
_consents: Table = Consent.__table__  # type: ignore[assignment]

CHUNK = 900

#: Customer columns an import may write (besides the identity keys).
IMPORT_FIELDS = ("name", "gender", "city", "level", "birthday", "registered_at", "contract_end", "timezone")

__all__ = [
    "IMPORT_FIELDS", "find_customers", "insert_customers", "insert_orders", "add_orders", "quintile_ends", "recompute_aggregates", "rescore", "rfm_segment",
    "update_customers", "upsert_consents", "upsert_tags",
]


def find_customers(session: Session, *, external_ids: Collection[str], phones: Collection[str],
                   emails: Collection[str]) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Existing customers by external id, phone and (lower-cased) email."""
    by_ext: dict[str, int] = {}
    by_phone: dict[str, int] = {}
    by_email: dict[str, int] = {}
    for values, column, out in ((sorted(external_ids), _cust.c.external_id, by_ext),
                                (sorted(phones), _cust.c.phone, by_phone)):
        for start in range(0, len(values), CHUNK):
            chunk = values[start:start + CHUNK]
            stmt = select(column, _cust.c.id).where(one_of(column, chunk, dialect_name(session)))
            for key, cid in session.execute(stmt.order_by(_cust.c.id)):
                out.setdefault(key, int(cid))
    values = sorted(emails)
    for start in range(0, len(values), CHUNK):
        chunk = values[start:start + CHUNK]
        stmt = select(func.lower(_cust.c.email), _cust.c.id).where(func.lower(_cust.c.email).in_(chunk))
        for key, cid in session.execute(stmt.order_by(_cust.c.id)):
            by_email.setdefault(key, int(cid))
    return by_ext, by_phone, by_email


def insert_customers(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert customers (one executemany); their ids, in the order of ``rows``."""
    if not rows:
        return []
    stmt = insert(_cust).returning(_cust.c.id, sort_by_parameter_order=True)
    return [int(r[0]) for r in session.execute(stmt, [dict(r) for r in rows])]


def update_customers(session: Session, rows: Sequence[Mapping[str, Any]], db_now: datetime) -> None:
    """Fill in existing customers: each given non-empty value replaces the
    stored one; an empty (None) value keeps it (an external id is only ever
    added, never replaced). Rows carry ``cid`` and every
    column of :data:`IMPORT_FIELDS` plus ``external_id``, ``phone``, ``email``."""
    if not rows:
        return
    cols = ("external_id", "phone", "email", *IMPORT_FIELDS)
    stmt = (update(_cust).where(_cust.c.id == bindparam("cid"))
            .values(**{c: func.coalesce(bindparam(f"v_{c}", type_=_cust.c[c].type), _cust.c[c]) for c in cols},
                    updated_at=db_now)
            .values(external_id=func.coalesce(_cust.c.external_id, bindparam("v_external_id"))))
    params = [{"cid": r["cid"], **{f"v_{c}": r.get(c) for c in cols}} for r in rows]
    session.connection().execute(stmt, params)


def upsert_tags(session: Session, pairs: Collection[tuple[int, str]]) -> int:
    return insert_ignore(session, _tags, [{"customer_id": c, "tag": t} for c, t in sorted(pairs)])


def upsert_consents(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update (customer_id, channel) consents: one executemany."""
    if not rows:
        return
    stmt = dialect_insert(dialect_name(session), _consents)
    stmt = stmt.on_conflict_do_update(index_elements=["customer_id", "channel"],
                                      set_={"granted": stmt.excluded.granted, "source": stmt.excluded.source,
                                            "updated_at": stmt.excluded.updated_at})
    session.connection().execute(stmt, [dict(r) for r in rows])


def insert_orders(session: Session, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert orders, skipping order ids already stored (a re-import adds nothing)."""
    return insert_ignore(session, _orders, rows)


def quintile_ends(n: int) -> list[int]:
    """The last rank (1-based) of each of the first four quintiles of ``n``
    ranked rows, as SQL's ``NTILE(5)`` deals them: the first ``n % 5``
    buckets get one row more."""
    q, r = divmod(n, 5)
    ends, total = [], 0
    for bucket in range(1, 5):
        total += q + (1 if bucket <= r else 0)
        ends.append(total)
    return ends


#: The three RFM keys: (column ranked, who is ranked). Recency ranks by last purchase (its index; buyers are
#: exactly those with one), frequency by order count, monetary by total spent.
_RFM_KEYS = {"r": (_cust.c.last_purchase_at, _cust.c.last_purchase_at.is_not(None)),
             "f": (_cust.c.order_count, _cust.c.order_count > 0),
             "m": (_cust.c.total_spent, _cust.c.order_count > 0)}


def _boundary_reads(key: Any, population: Any) -> tuple[Any, Any]:
    """The row ``skip`` rows into ``population`` ordered by (key, id): from the
    start, and after a given (key, id). Built once: a batch reads twelve of them."""
    first = (select(key, _cust.c.id).where(population).order_by(key, _cust.c.id)
             .limit(1).offset(bindparam("skip", type_=Integer())))
    after = first.where(tuple_(key, _cust.c.id) > tuple_(bindparam("after_key", type_=key.type),
                                                          bindparam("after_id", type_=_cust.c.id.type)))
    return first, after


_BOUNDARY_READS = {name: _boundary_reads(key, population) for name, (key, population) in _RFM_KEYS.items()}


def _ranked(key: Any, population: Any) -> Any:
    """PostgreSQL: the (key, id) at the ranks ``:ends`` of ``population``
    ordered by (key, id), in one pass (``row_number()``)."""
    rn = func.row_number().over(order_by=(key, _cust.c.id)).label("rn")
    ranked = select(key.label("k"), _cust.c.id.label("cid"), rn).where(population).subquery()
    return (select(ranked.c.k, ranked.c.cid).where(ranked.c.rn == any_(bindparam("ends", type_=ARRAY(Integer()))))
            .order_by(ranked.c.rn))


_RANKED = {name: _ranked(key, population) for name, (key, population) in _RFM_KEYS.items()}


def _ranked_counted() -> Any:
    """PostgreSQL: the frequency boundaries and, in the same pass, ``n`` (every
    buyer: ``count(*) OVER ()`` of ``order_count > 0``, the count the other two
    rankings use), the ranks computed from it as :func:`quintile_ends` does
    (``j·(n div 5) + min(j, n mod 5)``; ranks below 1 or repeated match no
    row or the same one)."""
    key, population = _RFM_KEYS["f"]
    ranked = select(key.label("k"), _cust.c.id.label("cid"),
                    func.row_number().over(order_by=(key, _cust.c.id)).label("rn"),
                    func.count().over().label("n")).where(population).subquery()
    n = ranked.c.n
    ends = [j * func.div(n, 5) + func.least(j, func.mod(n, 5)) for j in range(1, 5)]
    return select(ranked.c.k, ranked.c.cid, ranked.c.n).where(ranked.c.rn.in_(ends)).order_by(ranked.c.rn)


_RANKED_COUNTED = _ranked_counted()


def _boundaries(session: Session, name: str, n: int) -> list[tuple[Any, Any]]:
    """The (key, id) of the last row of each of the first four quintiles of the
    ``n`` ranked customers, as ``NTILE(5) OVER (ORDER BY key, id)`` deals them
    (fewer when quintiles coincide). Read with ``ORDER BY key, id LIMIT 1
    OFFSET d``, each after the previous one (index walks over
    ``ix_customers_rfm_*`` / ``ix_customers_last_purchase_at`` on both
    databases), so scoring a thousand customers reads four index ranges.
    Keyset chaining: each boundary is read starting after the previous one
    (``(key, id) > (k, id)``, an index range on both databases), so the four
    reads walk 80 % of the index once instead of 0.2 + 0.4 + 0.6 + 0.8 of it
    (or, on PostgreSQL, a full ranked pass) for every batch."""
    ends = sorted({e for e in quintile_ends(n) if e >= 1})
    if not ends:
        return []
    if dialect_name(session) == "postgresql":
        # One statement instead of four round trips: the rows at those ranks of one ordered pass.
        return [(k, i) for k, i in session.execute(_RANKED[name], {"ends": ends})]
    first, after = _BOUNDARY_READS[name]
    rows: list[tuple[Any, Any]] = []
    previous = 0
    for end in ends:
        if rows:
            found = session.execute(after, {"skip": end - previous - 1, "after_key": rows[-1][0],
                                            "after_id": rows[-1][1]}).first()
        else:
            found = session.execute(first, {"skip": end - 1}).first()
        if found is None:
            break
        rows.append((found[0], found[1]))
        previous = end
    return rows


def _score(name: str) -> Any:
    """The quintile score 1–5 of each customer by the key ``name`` (ties broken
    by id, ascending: 5 is the top fifth), exactly ``NTILE(5) OVER (ORDER BY
    key, id)``, as ``1 + the number of quintile boundaries the customer's (key,
    id) is above``. The four boundaries are parameters ``<name>_k<j>`` and
    ``<name>_i<j>``; a missing one is NULL, which no row is above."""
    key = _RFM_KEYS[name][0]
    score: Any = literal(1)
    for j in range(1, 5):
        k = bindparam(f"{name}_k{j}", type_=key.type)
        i = bindparam(f"{name}_i{j}", type_=_cust.c.id.type)
        score = score + case(((key > k) | ((key == k) & (_cust.c.id > i)), 1), else_=0)
    return score


_RESCORE: dict[tuple[str, bool], Any] = {}


def _rescore_stmt(dialect: str, scoped: bool) -> Any:
    """The one UPDATE of :func:`rescore`, built once per dialect and scope: the
    segment is computed from the new scores' expressions, not the old columns."""
    stmt = _RESCORE.get((dialect, scoped))
    if stmt is None:
        last = _cust.c.last_purchase_at
        if dialect == "sqlite":
            days = func.cast(func.julianday(bindparam("now_text", type_=String())) - func.julianday(last), Integer)
        else:
            days = func.cast(func.floor(func.extract("epoch", bindparam("now", type_=DateTime()) - last) / 86400),
                             Integer)
        r, f, m = _score("r"), _score("f"), _score("m")
        stmt = update(_cust).values(rfm_recency_days=days, rfm_r=r, rfm_f=f, rfm_m=m,
                                    rfm_segment=rfm_segment(r, f, m))
        if not scoped:
            stmt = stmt.where(_cust.c.order_count > 0)
        elif dialect == "postgresql":
            stmt = stmt.where(_cust.c.id == any_(bindparam("ids", type_=ARRAY(Integer()))))
        else:
            each = func.json_each(bindparam("ids", type_=String())).table_valued("value")
            stmt = stmt.where(_cust.c.id.in_(select(each.c.value).scalar_subquery()))
        stmt = _RESCORE[(dialect, scoped)] = stmt
    return stmt


def recompute_aggregates(session: Session, *, db_now: datetime, customer_ids: Collection[int] | None = None) -> None:
    """Recompute ``order_count``, ``total_spent`` (the ``net_amount`` of
    counted orders: paid and partially refunded), ``last_purchase_at``,
    ``rfm_recency_days``, the RFM scores 1–5 by quintiles (``NTILE(5)`` over
    customers with orders; 5 is best: most recent, most frequent, highest
    spend; see :func:`_score`) and ``rfm_segment``, set-based.

    ``customer_ids`` limits the writes to those customers (an order batch
    updates the customers it touched): their aggregates are recomputed from
    their orders and their scores are ranked against everyone, with this
    same formula. The other customers keep their scores until the next full
    recompute (``customer_ids=None``, e.g. after a CSV import)."""
    counted = _orders.c.status.in_(COUNTED_ORDER_STATUSES)
    ids = sorted(set(customer_ids)) if customer_ids is not None else None
    agg_q = (select(_orders.c.customer_id.label("cid"), func.count().label("n"),
                    func.coalesce(func.sum(_orders.c.net_amount), 0).label("total"),
                    func.max(_orders.c.placed_at).label("last"))
             .where(counted).group_by(_orders.c.customer_id))
    none_yet = {"order_count": 0, "total_spent": 0, "last_purchase_at": None, "rfm_recency_days": None,
                "rfm_r": None, "rfm_f": None, "rfm_m": None, "rfm_segment": "prospect"}
    scope: list[int] | None = None
    if ids is None:
        agg = agg_q.subquery()
        session.execute(update(_cust).values(**none_yet).where(~_cust.c.id.in_(select(agg.c.cid))))
        session.execute(update(_cust).values(order_count=agg.c.n, total_spent=agg.c.total,
                                             last_purchase_at=agg.c.last).where(_cust.c.id == agg.c.cid))
    else:
        if not ids:
            return
        # A batch's customers: their sums read in one SELECT and written in one executemany
        # (an UPDATE … FROM would aggregate their orders twice).
        found = {int(cid): (n, total, last) for cid, n, total, last
                 in session.execute(agg_q.where(_orders.c.customer_id.in_(ids)))}
        rows = [{"cid": cid, "n": found[cid][0], "total": found[cid][1], "last": found[cid][2]}
                if cid in found else {"cid": cid, "n": 0, "total": 0, "last": None} for cid in ids]
        session.connection().execute(
            update(_cust).where(_cust.c.id == bindparam("cid"))
            .values(order_count=bindparam("n"), total_spent=bindparam("total"), last_purchase_at=bindparam("last")),
            rows)
        if len(found) < len(ids):
            session.execute(update(_cust).values(**none_yet).where(_cust.c.id.in_([c for c in ids if c not in found])))
        if not found:
            return
        scope = sorted(found)
    rescore(session, db_now=db_now, customer_ids=scope)


def _add_orders_stmt(cid: Any, n: Any, total: Any, last: Any) -> Any:
    """Add ``n`` orders worth ``total``, the latest at ``last``, to customer ``cid``."""
    return update(_cust).where(_cust.c.id == cid).values(
        order_count=_cust.c.order_count + n, total_spent=_cust.c.total_spent + total,
        last_purchase_at=case((_cust.c.last_purchase_at.is_(None) | (_cust.c.last_purchase_at < last), last),
                              else_=_cust.c.last_purchase_at))


_ADD_ORDERS_SQLITE = Prepared(_add_orders_stmt(
    bindparam("cid", type_=Integer()), bindparam("n", type_=Integer()),
    bindparam("total", type_=_cust.c.total_spent.type), bindparam("last", type_=_cust.c.last_purchase_at.type)))


def add_orders(session: Session, sums: Mapping[int, tuple[int, Any, datetime]], *, db_now: datetime) -> None:
    """Add new counted orders to their customers: ``sums`` maps a customer id to
    (number of orders, their net amount, their latest ``placed_at``). One
    executemany adds them to the stored aggregates (no read of past orders),
    then :func:`rescore` scores those customers. The stored aggregates are
    those of the counted orders already stored, as every writer keeps them
    (:func:`recompute_aggregates` rebuilds them from the orders)."""
    if not sums:
        return
    rows = [{"cid": cid, "n": n, "total": total, "last": at} for cid, (n, total, at) in sorted(sums.items())]
    if dialect_name(session) == "postgresql":
        # One statement over arrays: psycopg would otherwise send a thousand UPDATEs.
        v = select(*(func.unnest(bindparam(k, [r[k] for r in rows], type_=ARRAY(t))).label(k) for k, t in
                     (("cid", Integer()), ("n", Integer()), ("total", _cust.c.total_spent.type),
                      ("last", _cust.c.last_purchase_at.type)))).subquery()
        session.connection().execute(_add_orders_stmt(v.c.cid, v.c.n, v.c.total, v.c.last))
    else:  # SQLite runs an executemany in C; parameters processed as SQLAlchemy would, without its per-row cost
        db = Db.of(session)
        sql, _, procs, order, _ = _ADD_ORDERS_SQLITE.plan(db.dialect)
        params = []
        for r in rows:
            values = dict(r)
            for name, proc in procs.items():
                values[name] = proc(values[name])
            params.append(tuple([values[k] for k in order]))
        db.raw.executemany(sql, params)
    rescore(session, db_now=db_now, customer_ids=sorted(sums))


def rescore(session: Session, *, db_now: datetime, customer_ids: Sequence[int] | None) -> None:
    """``rfm_recency_days``, the RFM quintile scores and ``rfm_segment`` of
    ``customer_ids`` (everyone with orders when None), ranked against every
    customer with orders."""
    dialect = dialect_name(session)
    params: dict[str, Any] = {"now": db_now, "now_text": db_now.isoformat(sep=" ")}
    known: dict[str, list[tuple[Any, Any]]] = {}
    if dialect == "postgresql":  # the buyers are counted by the frequency ranking's own pass
        rows = session.execute(_RANKED_COUNTED).all()
        n = int(rows[0][2]) if rows else 0
        known["f"] = [(k, i) for k, i, _ in rows]
    else:
        n = int(session.scalar(select(func.count()).select_from(_cust).where(_cust.c.order_count > 0)) or 0)
    for name in _RFM_KEYS:
        found = known[name] if name in known else _boundaries(session, name, n)
        for j in range(1, 5):
            params[f"{name}_k{j}"], params[f"{name}_i{j}"] = found[j - 1] if j <= len(found) else (None, None)
    if customer_ids is not None:
        ids = [int(c) for c in customer_ids]
        params["ids"] = ids if dialect == "postgresql" else json.dumps(ids)
    if dialect == "sqlite":
        params.pop("now")
    else:
        params.pop("now_text")
    session.execute(_rescore_stmt(dialect, customer_ids is not None), params)


def rfm_segment(r: Any, f: Any, m: Any) -> Any:
    """The segment of RFM scores 1–5 (SQL expressions), the one place it is defined."""
    return case(
        ((r >= 4) & (f >= 4) & (m >= 4), "champion"), ((r >= 4) & (f <= 2), "new"), ((r >= 3) & (f >= 3), "loyal"),
        ((r <= 2) & (f >= 3), "at_risk"), (r <= 1, "hibernating"), else_="needs_attention")
