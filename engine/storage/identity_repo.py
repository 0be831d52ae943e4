"""SQL of "data in" (issue 12): finding customers by any identity, claiming
identities, locking identities against a racing upsert, updating customers
with explicit values, and appending inbound events once per idempotency key.

Everything runs in the caller's transaction and takes naive UTC times.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, exists, insert, select, text, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert, insert_ignore
from engine.storage.customers_repo import CHUNK, find_customers
from engine.storage.results import affected
from engine.storage.models import Customer, CustomerIdentity, CustomerTag, Event

_cust: Table = Customer.__table__  # type: ignore[assignment]
_ids: Table = CustomerIdentity.__table__  # type: ignore[assignment]
_tags: Table = CustomerTag.__table__  # type: ignore[assignment]
_events: Table = Event.__table__  # type: ignore[assignment]

#: Identity kinds that are columns of ``customers``; the others live only in ``customer_identities``.
COLUMN_KINDS = ("external_id", "phone", "email")
#: Advisory-lock buckets on PostgreSQL: identities hash into these, so a batch takes at most this many locks.
LOCK_BUCKETS = 64
#: A fixed first key of the two-key advisory lock, so these locks never collide with other users of advisory locks.
LOCK_SPACE = 0x7012

__all__ = [
    "COLUMN_KINDS", "add_identities", "append_events", "customer_rows", "event_by_key", "find_identities",
    "identities_of", "insert_event_once", "lock_identities", "remove_tags", "set_customer_values",
]


def lock_identities(session: Session, identities: Iterable[tuple[str, str]]) -> None:
    """Serialise upserts that touch the same identities until the transaction ends.

    PostgreSQL: transaction-level advisory locks on the identities' hash
    buckets, taken in order (no deadlock between two batches). SQLite writes
    one transaction at a time already (``database.transaction`` queues the
    process's writers), so nothing is needed there."""
    if dialect_name(session) != "postgresql":
        return
    buckets = sorted({zlib.crc32(f"{k}:{v}".encode()) % LOCK_BUCKETS for k, v in identities})
    for bucket in buckets:
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :bucket)"),
                        {"space": LOCK_SPACE, "bucket": bucket})


def find_identities(session: Session, wanted: Mapping[str, Collection[str]]) -> dict[tuple[str, str], int]:
    """Stored customers for each (kind, value): the column (external id,
    phone, lower-cased e-mail) first, then ``customer_identities`` (member
    number, WeCom id, and the aliases merges leave behind)."""
    out: dict[tuple[str, str], int] = {}
    by_ext, by_phone, by_email = find_customers(session, external_ids=wanted.get("external_id", ()),
                                                phones=wanted.get("phone", ()), emails=wanted.get("email", ()))
    out.update({("external_id", k): v for k, v in by_ext.items()})
    out.update({("phone", k): v for k, v in by_phone.items()})
    out.update({("email", k): v for k, v in by_email.items()})
    for kind, values in wanted.items():
        missing = sorted(v for v in values if (kind, v) not in out)
        # Most installations have no alias of a column kind (only merges make them): one index probe saves the IN lists.
        if not missing or not session.execute(select(exists().where(_ids.c.kind == kind))).scalar():
            continue
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start:start + CHUNK]
            stmt = select(_ids.c.value, _ids.c.customer_id).where(_ids.c.kind == kind, _ids.c.value.in_(chunk))
            for value, cid in session.execute(stmt):
                out[(kind, value)] = int(cid)
    # Customers stored before identities existed (imports, the demo) carry their
    # WeCom id only in ``attrs.wecom_external_userid``, where sends look for it.
    missing = sorted(v for v in wanted.get("wecom", ()) if ("wecom", v) not in out)
    attr = _cust.c.attrs["wecom_external_userid"].as_string()
    for start in range(0, len(missing), CHUNK):
        stmt = select(attr, _cust.c.id).where(attr.in_(missing[start:start + CHUNK])).order_by(_cust.c.id)
        for value, cid in session.execute(stmt):
            out.setdefault(("wecom", str(value)), int(cid))
    return out


def add_identities(session: Session, rows: Sequence[tuple[str, str, int]], db_now: datetime) -> int:
    """Claim (kind, value) for customers; an identity already claimed is left as it is."""
    return insert_ignore(session, _ids, [{"kind": k, "value": v, "customer_id": c, "created_at": db_now}
                                         for k, v, c in sorted(set(rows))])


def identities_of(session: Session, customer_id: int) -> list[tuple[str, str]]:
    """The identities of one customer stored in ``customer_identities``."""
    return [(str(k), str(v)) for k, v in session.execute(
        select(_ids.c.kind, _ids.c.value).where(_ids.c.customer_id == customer_id).order_by(_ids.c.kind, _ids.c.id))]


def customer_rows(session: Session, ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """Stored customers by id (every column)."""
    out: dict[int, dict[str, Any]] = {}
    values = sorted(ids)
    for start in range(0, len(values), CHUNK):
        for row in session.execute(select(_cust).where(_cust.c.id.in_(values[start:start + CHUNK]))):
            out[int(row.id)] = dict(row._mapping)
    return out


def set_customer_values(session: Session, rows: Sequence[Mapping[str, Any]], db_now: datetime) -> None:
    """``UPDATE customers`` with each row's explicit values (``cid`` names the
    customer); rows with the same columns share one executemany."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(k for k in row if k != "cid")), []).append(row)
    for cols, group in groups.items():
        stmt = (update(_cust).where(_cust.c.id == bindparam("cid"))
                .values(**{c: bindparam(f"v_{c}", type_=_cust.c[c].type) for c in cols}, updated_at=db_now))
        session.connection().execute(stmt, [{"cid": r["cid"], **{f"v_{c}": r[c] for c in cols}} for r in group])


def remove_tags(session: Session, pairs: Collection[tuple[int, str]]) -> int:
    removed = 0
    for cid, tag in sorted(pairs):
        removed += affected(session.execute(delete(_tags).where(_tags.c.customer_id == cid, _tags.c.tag == tag)))
    return removed


def append_events(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append events (one executemany); rows carry name, subject_type,
    subject_id (text), payload and created_at (naive UTC)."""
    if rows:
        session.connection().execute(insert(_events), [dict(r) for r in rows])


def insert_event_once(session: Session, row: Mapping[str, Any]) -> int | None:
    """Append one event unless its ``idempotency_key`` is stored (``ON
    CONFLICT DO NOTHING``, so a racing twin inserts nothing): its id, or None."""
    stmt = dialect_insert(dialect_name(session), _events).on_conflict_do_nothing().returning(_events.c.id)
    got = session.connection().execute(stmt, dict(row)).first()
    return int(got[0]) if got is not None else None


def event_by_key(session: Session, key: str) -> dict[str, Any] | None:
    row = session.execute(select(_events.c.id, _events.c.name, _events.c.subject_type, _events.c.subject_id,
                                 _events.c.payload, _events.c.created_at)
                          .where(_events.c.idempotency_key == key)).first()
    return dict(row._mapping) if row is not None else None

