"""Outbox rows: insert with idempotency keys, count for caps, mark log deliveries.

Rows are written with prebuilt Core statements on the session's connection, in
the caller's transaction: a message exists if and only if the decision that
produced it committed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, Table, and_, cast, literal, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import OutboxMessage
from engine.storage.results import affected

_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_c = _outbox.c

#: Columns every outbox row is written with (missing keys are NULL).
COLUMNS = ("channel", "connector", "recipient", "subject", "body", "payload", "idempotency_key",
           "delivery_class", "status", "attempts", "next_attempt_at", "rule_id", "journey_id",
           "created_at", "customer_id", "template_id")


def insert_messages(session: Session, rows: Sequence[Mapping[str, Any]], *, returning: bool = True) -> list[str]:
    """Insert outbox rows, skipping any whose ``idempotency_key`` exists.

    Times are naive UTC. Returns the idempotency keys actually inserted (one
    executemany with RETURNING, batched by SQLAlchemy into multi-row INSERTs);
    with ``returning=False`` a plain driver executemany, faster for journey
    batches, and an empty list.
    """
    if not rows:
        return []
    stmt = dialect_insert(dialect_name(session), _outbox).on_conflict_do_nothing()
    params = [{k: r.get(k) for k in COLUMNS} for r in rows]
    if not returning:
        session.connection().execute(stmt, params)
        return []
    return [row[0] for row in session.connection().execute(stmt.returning(_c.idempotency_key), params)]


def insert_message(session: Session, row: Mapping[str, Any]) -> int | None:
    """Insert one outbox row; its id, or None when the idempotency key exists."""
    stmt = (dialect_insert(dialect_name(session), _outbox)
            .values({k: row.get(k) for k in COLUMNS})
            .on_conflict_do_nothing().returning(_c.id))
    found = session.connection().execute(stmt).scalar_one_or_none()
    return None if found is None else int(found)


def count_recent(session: Session, customer_ids: Collection[int], *, channels: Collection[str],
                 delivery_class: str, since: datetime) -> dict[tuple[int, str], list[datetime]]:
    """Creation times of messages of ``delivery_class`` per (customer, channel)
    created at or after ``since`` (naive UTC), oldest first, for frequency caps."""
    out: dict[tuple[int, str], list[datetime]] = {}
    ids = list(customer_ids)
    for start in range(0, len(ids), 900):
        stmt = (select(_c.customer_id, _c.channel, _c.created_at)
                .where(_c.customer_id.in_(ids[start:start + 900]), _c.channel.in_(list(channels)),
                       _c.delivery_class == delivery_class, _c.created_at >= since)
                .order_by(_c.created_at))
        for cid, channel, created in session.connection().execute(stmt):
            out.setdefault((int(cid), channel), []).append(created)
    return out


def mark_sent(session: Session, *, connectors: Collection[str], now: datetime, limit: int) -> int:
    """Mark up to ``limit`` queued rows of ``connectors`` due by ``now`` as sent
    (the ``log`` connector: the database row is the delivery). Returns how many."""
    if not connectors:
        return 0
    pick = (select(_c.id).where(_c.status == "queued", _c.connector.in_(list(connectors)),
                                _c.next_attempt_at <= now)
            .order_by(_c.id).limit(limit))
    if dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    ids = [r[0] for r in session.connection().execute(pick)]
    if not ids:
        return 0
    session.connection().execute(
        update(_outbox).where(and_(_c.id.in_(ids), _c.status == "queued"))
        .values(status="sent", sent_at=now, attempts=_c.attempts + 1, provider_id=literal("log-", String) + cast(_c.id, String)))
    return len(ids)


__all__ = ["COLUMNS", "ROW_COLUMNS", "count_recent", "insert_message", "insert_messages", "insert_rows",
           "insert_selected", "mark_sent"]


def insert_selected(session: Session, select_sql: str, params: Mapping[str, Any]) -> int:
    """Queue the messages a ``SELECT`` yields, one per row, its columns those of
    :data:`COLUMNS` in order (a set-based send: engine/storage/entry_sql.py);
    ``:now`` is bound as a naive UTC time. Rows whose idempotency key exists
    are skipped. Returns rows inserted."""
    from sqlalchemy import DateTime, bindparam, text

    stmt = text(f"INSERT INTO outbox ({', '.join(COLUMNS)}) {select_sql} ON CONFLICT DO NOTHING")
    if ":now" in select_sql:
        stmt = stmt.bindparams(bindparam("now", type_=DateTime()))
    return affected(session.execute(stmt.execution_options(preserve_rowcount=True), dict(params)))


#: The per-row columns of :func:`insert_rows`, in order.
ROW_COLUMNS = (("channel", "text"), ("connector", "text"), ("recipient", "text"), ("subject", "text"),
               ("body", "text"), ("payload", "json"), ("idempotency_key", "text"), ("delivery_class", "text"),
               ("rule_id", "text"), ("journey_id", "int"), ("customer_id", "int"), ("template_id", "text"))


def insert_rows(session: Session, rows: Sequence[Sequence[Any]], *, now: datetime) -> int:
    """Queue many messages in one ``INSERT … SELECT`` over a JSON document
    (a journey batch): ``rows`` hold the :data:`ROW_COLUMNS` values in order;
    every row is ``queued``, due and created at ``now`` (naive UTC). Rows whose
    idempotency key exists are skipped. Returns rows inserted."""
    if not rows:
        return 0
    import json

    from sqlalchemy import DateTime, bindparam, text

    from engine.storage.automation_repo import json_rows

    dialect = dialect_name(session)
    names = [n for n, _ in ROW_COLUMNS]
    where = " WHERE true" if dialect == "sqlite" else ""
    stmt = text(
        f"INSERT INTO outbox ({', '.join(names)}, status, attempts, next_attempt_at, created_at) "
        f"SELECT {', '.join('v.' + n for n in names)}, 'queued', 0, :now, :now "
        f"FROM {json_rows(dialect, ROW_COLUMNS)}{where} ON CONFLICT DO NOTHING"
    ).bindparams(bindparam("now", type_=DateTime()))
    doc = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), default=str)
    result = session.connection().execute(stmt.execution_options(preserve_rowcount=True), {"doc": doc, "now": now})
    return int(result.rowcount)
