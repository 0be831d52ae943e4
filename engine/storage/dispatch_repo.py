"""Outbox rows as the dispatcher sees them: claim, settle, reap, resend.

Every statement runs on the caller's session connection inside the caller's
transaction; times are naive UTC. A claim is fenced: settling a row requires
``status = 'sending'``, the same ``claimed_by`` and the same ``attempts`` the
claim wrote, so a worker whose claim was reaped (it stalled past the reaper's
limit) cannot overwrite what happened since — its late write touches 0 rows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import _dialect_name
from engine.storage.models import Consent, OutboxMessage

_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_c = _outbox.c
_consents: Table = Consent.__table__  # type: ignore[assignment]

#: Statuses a dispatcher may pick up when due.
DUE_STATUSES = ("queued", "retry")

#: Columns a claim returns (what :meth:`OutgoingMessage.from_outbox` reads, plus routing).
CLAIM_COLUMNS = ("id", "channel", "connector", "recipient", "subject", "body", "payload", "idempotency_key",
                 "delivery_class", "attempts", "customer_id", "claimed_by")


def claim(session: Session, *, worker_id: str, now: datetime, limit: int,
          connectors: Collection[str]) -> list[dict[str, Any]]:
    """Mark up to ``limit`` due rows of ``connectors`` as ``sending`` by
    ``worker_id`` (attempts + 1) and return them, oldest due first.

    PostgreSQL: the rows are picked ``FOR UPDATE SKIP LOCKED`` so concurrent
    claimers never wait on nor take each other's rows. SQLite: one statement
    that writes (the database's single writer lock makes it the only claimer
    at that moment); the outer ``WHERE status IN …`` re-checks anyway.
    The caller commits before any provider is called.
    """
    if not connectors or limit <= 0:
        return []
    pick = (select(_c.id)
            .where(_c.status.in_(DUE_STATUSES), _c.next_attempt_at <= now, _c.connector.in_(sorted(connectors)))
            .order_by(_c.next_attempt_at, _c.id).limit(limit))
    if _dialect_name(session) == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (update(_outbox)
            .where(_c.id.in_(pick.scalar_subquery()), _c.status.in_(DUE_STATUSES))
            .values(status="sending", claimed_by=worker_id, claimed_at=now, attempts=_c.attempts + 1)
            .returning(*(_c[name] for name in CLAIM_COLUMNS)))
    rows = [dict(r._mapping) for r in session.connection().execute(stmt)]
    rows.sort(key=lambda r: r["id"])
    return rows


_SETTLE = (update(_outbox)
           .where(_c.id == bindparam("b_id"), _c.status == "sending", _c.claimed_by == bindparam("b_worker"),
                  _c.attempts == bindparam("b_attempts"))
           .values(status=bindparam("status"), provider_id=bindparam("provider_id"),
                   last_error=bindparam("last_error"), next_attempt_at=bindparam("next_attempt_at"),
                   sent_at=bindparam("sent_at"), attempts=bindparam("new_attempts"), claimed_by=None))


def settle(session: Session, outcomes: Sequence[Mapping[str, Any]]) -> int:
    """Write the outcome of claimed rows in one executemany.

    Each mapping has ``id, worker, attempts`` (the claim's values, for fencing)
    and ``status, provider_id, last_error, next_attempt_at, sent_at`` and
    optionally ``new_attempts`` (default: unchanged). Returns how many rows
    were settled as asked; fewer means some claims had been reaped.
    """
    if not outcomes:
        return 0
    params = [{
        "b_id": o["id"], "b_worker": o["worker"], "b_attempts": o["attempts"], "status": o["status"],
        "provider_id": o.get("provider_id"), "last_error": o.get("last_error"),
        "next_attempt_at": o.get("next_attempt_at"), "sent_at": o.get("sent_at"),
        "new_attempts": o.get("new_attempts", o["attempts"]),
    } for o in outcomes]
    result = session.connection().execute(_SETTLE.execution_options(preserve_rowcount=True), params)
    rowcount = result.rowcount
    return int(rowcount) if rowcount is not None and rowcount >= 0 else len(params)


def opted_out(session: Session, pairs: Collection[tuple[int, str]]) -> set[tuple[int, str]]:
    """The (customer_id, channel) pairs among ``pairs`` that do not have a
    granted consent (no row counts as not granted, as in rule conditions)."""
    if not pairs:
        return set()
    ids = sorted({cid for cid, _ in pairs})
    granted: set[tuple[int, str]] = set()
    for start in range(0, len(ids), 900):
        stmt = (select(_consents.c.customer_id, _consents.c.channel)
                .where(_consents.c.customer_id.in_(ids[start:start + 900]), _consents.c.granted.is_(True)))
        granted.update((int(cid), ch) for cid, ch in session.connection().execute(stmt))
    return {p for p in pairs if p not in granted}


def defer_due(session: Session, *, connector: str, now: datetime, until: datetime,
              delivery_classes: Collection[str]) -> int:
    """Move the due rows of ``connector`` (of ``delivery_classes``) to
    ``until`` without claiming them (quiet hours). Returns how many."""
    stmt = (update(_outbox)
            .where(_c.status.in_(DUE_STATUSES), _c.next_attempt_at <= now, _c.connector == connector,
                   _c.delivery_class.in_(sorted(delivery_classes)))
            .values(next_attempt_at=until).execution_options(preserve_rowcount=True))
    return int(session.connection().execute(stmt).rowcount or 0)


def reap(session: Session, *, now: datetime, stale_before: datetime) -> dict[str, int]:
    """Settle claims older than ``stale_before`` whose worker died: marketing
    rows become ``unknown`` (they may have reached the provider: at most once),
    everything else goes back to ``retry``, due at ``now`` (at least once).
    Returns counts per new status."""
    base = and_(_c.status == "sending", _c.claimed_at < stale_before)
    marketing = (_c.delivery_class == "marketing") | _c.delivery_class.is_(None)
    conn = session.connection()
    unknown = conn.execute(
        update(_outbox).where(base, marketing)
        .values(status="unknown", claimed_by=None, last_error="reaped: worker died mid-send")
        .execution_options(preserve_rowcount=True)).rowcount
    retry = conn.execute(
        update(_outbox).where(base, ~marketing)
        .values(status="retry", claimed_by=None, next_attempt_at=now,
                last_error="reaped: worker died mid-send")
        .execution_options(preserve_rowcount=True)).rowcount
    return {"unknown": int(unknown or 0), "retry": int(retry or 0)}


def resend(session: Session, message_id: int, *, now: datetime,
           statuses: Collection[str] = ("dead",)) -> bool:
    """Put a dead letter back in the queue, attempts reset. False when the
    row does not exist or is not in ``statuses``."""
    stmt = (update(_outbox).where(_c.id == message_id, _c.status.in_(sorted(statuses)))
            .values(status="queued", attempts=0, next_attempt_at=now, claimed_by=None, claimed_at=None,
                    last_error=None).execution_options(preserve_rowcount=True))
    return bool(session.connection().execute(stmt).rowcount)


def status_counts(session: Session) -> dict[str, int]:
    """Rows per status (tests, the bench, the messages page)."""
    from sqlalchemy import func
    return {s: int(n) for s, n in session.connection().execute(
        select(_c.status, func.count()).group_by(_c.status))}


__all__ = ["CLAIM_COLUMNS", "DUE_STATUSES", "claim", "defer_due", "opted_out", "reap", "resend", "settle",
           "status_counts"]
