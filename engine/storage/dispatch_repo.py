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

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, insert_ignore
from engine.storage.models import Consent, MessageAttempt, MessageReceipt, OutboxMessage

_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_c = _outbox.c
_consents: Table = Consent.__table__  # type: ignore[assignment]
_attempts: Table = MessageAttempt.__table__  # type: ignore[assignment]
_receipts: Table = MessageReceipt.__table__  # type: ignore[assignment]

#: Statuses a dispatcher may pick up when due.
DUE_STATUSES = ("queued", "retry")

#: Columns a claim returns (what :meth:`OutgoingMessage.from_outbox` reads, plus routing).
CLAIM_COLUMNS = ("id", "channel", "connector", "recipient", "subject", "body", "payload", "idempotency_key",
                 "delivery_class", "attempts", "customer_id", "claimed_by", "rule_id", "template_id")


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
    if dialect_name(session) == "postgresql":
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
    # The history: one row per real attempt (a hold that gives the attempt
    # back — configuration error, rate limit — was not an attempt).
    history = [{"message_id": o["id"], "attempt": o["attempts"], "at": o.get("at") or o.get("sent_at"),
                "worker": o["worker"], "outcome": o["status"], "provider_id": o.get("provider_id"),
                "error": o.get("last_error")}
               for o in outcomes if o.get("new_attempts", o["attempts"]) >= o["attempts"] and o.get("at")]
    if history:
        session.connection().execute(insert(_attempts), history)
    return int(rowcount) if rowcount is not None and rowcount >= 0 else len(params)


_RELEASE = (update(_outbox)
            .where(_c.id == bindparam("b_id"), _c.status == "sending", _c.claimed_by == bindparam("b_worker"),
                   _c.attempts == bindparam("b_attempts"))
            .values(status=bindparam("status"), attempts=bindparam("new_attempts"),
                    next_attempt_at=bindparam("next_attempt_at"), claimed_by=None, claimed_at=None))


def release(session: Session, items: Sequence[Mapping[str, Any]]) -> int:
    """Give claimed rows back unsent (a rate limit held them): the attempt
    the claim counted is returned, ``claimed_at`` cleared (it must not count
    as a send to the recipient), the row is due again at ``next_attempt_at``
    and its ``last_error`` is kept. Each item has ``id, worker, attempts``
    (the claim's, for fencing) and ``next_attempt_at``. Returns rows released."""
    if not items:
        return 0
    params = [{"b_id": i["id"], "b_worker": i["worker"], "b_attempts": i["attempts"],
               "new_attempts": max(0, int(i["attempts"]) - 1),
               "status": "queued" if int(i["attempts"]) <= 1 else "retry",
               "next_attempt_at": i["next_attempt_at"]} for i in items]
    result = session.connection().execute(_RELEASE.execution_options(preserve_rowcount=True), params)
    return int(result.rowcount) if result.rowcount is not None and result.rowcount >= 0 else len(params)


def recent_claims(session: Session, *, connector: str, recipients: Collection[str],
                  since: datetime, separator: str | None = None) -> dict[str, list[tuple[datetime, int]]]:
    """Per recipient, ``(claimed_at, id)`` of the rows of ``connector`` claimed
    after ``since`` that went (or are going) to the provider: sent, in flight
    with any dispatcher, settled in any way. Rows given back by a rate limit
    have no ``claimed_at`` and do not count.

    With ``separator`` (WeCom's ``a|b|c``) the keys are the members: a row
    counts for every member of its recipient list, and ``recipients`` may be
    lists themselves."""
    wanted = set(recipients)
    if separator:
        wanted = {m for r in recipients for m in str(r).split(separator) if m}
    out: dict[str, list[tuple[datetime, int]]] = {r: [] for r in wanted}
    names = sorted(wanted)
    for start in range(0, len(names), 200):
        part = names[start:start + 200]
        match: Any = _c.recipient.in_(part)
        if separator:
            match = or_(match, *(cond for m in part for cond in (
                _c.recipient.startswith(m + separator, autoescape=True),
                _c.recipient.endswith(separator + m, autoescape=True),
                _c.recipient.contains(separator + m + separator, autoescape=True))))
        stmt = select(_c.recipient, _c.claimed_at, _c.id).where(match, _c.claimed_at > since,
                                                                _c.connector == connector)
        seen: set[tuple[str, int]] = set()
        for recipient, claimed_at, row_id in session.connection().execute(stmt):
            members = str(recipient).split(separator) if separator else [str(recipient)]
            for member in members:
                if member in out and (member, int(row_id)) not in seen:
                    seen.add((member, int(row_id)))
                    out[member].append((claimed_at, int(row_id)))
    return out


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
    """Put a dead letter (or another row in ``statuses``, e.g. ``unknown``)
    back in the queue, attempts reset, keeping its idempotency key. False when
    the row does not exist or is not in ``statuses`` (so two people pressing
    "resend" at once queue it once)."""
    stmt = (update(_outbox).where(_c.id == message_id, _c.status.in_(sorted(statuses)))
            .values(status="queued", attempts=0, next_attempt_at=now, claimed_by=None, claimed_at=None,
                    last_error=None, reconcile_checks=0, reconciled_at=None)
            .execution_options(preserve_rowcount=True))
    return bool(session.connection().execute(stmt).rowcount)


# ------------------------------------------------------------ receipts

#: How final a delivery status is: a later receipt never moves a row back.
_DELIVERY_RANK = {None: 0, "pending": 1, "delivered": 2, "undelivered": 2, "failed": 2}


def unknown_rows(session: Session, *, connector: str, claimed_before: datetime, checked_before: datetime,
                 max_checks: int, limit: int) -> list[dict[str, Any]]:
    """``unknown`` rows of ``connector`` old enough to look up at the provider
    (claimed before ``claimed_before``), not looked up since
    ``checked_before`` and looked up fewer than ``max_checks`` times."""
    stmt = (select(*(_c[name] for name in CLAIM_COLUMNS), _c.claimed_at, _c.reconcile_checks)
            .where(_c.status == "unknown", _c.connector == connector, _c.claimed_at < claimed_before,
                   _c.reconcile_checks < max_checks,
                   or_(_c.reconciled_at.is_(None), _c.reconciled_at < checked_before))
            .order_by(_c.claimed_at, _c.id).limit(limit))
    return [dict(r._mapping) for r in session.connection().execute(stmt)]


def mark_checked(session: Session, ids: Collection[int], *, now: datetime, max_checks: int) -> int:
    """Count one provider lookup for ``unknown`` rows that it did not settle;
    the last allowed lookup leaves a note for the person who must decide."""
    if not ids:
        return 0
    conn = session.connection()
    conn.execute(update(_outbox).where(_c.id.in_(sorted(ids)), _c.status == "unknown")
                 .values(reconcile_checks=_c.reconcile_checks + 1, reconciled_at=now))
    result = conn.execute(
        update(_outbox).where(_c.id.in_(sorted(ids)), _c.status == "unknown", _c.reconcile_checks >= max_checks)
        .values(last_error=func.coalesce(_c.last_error, "") + " | reconcile: the provider has no record of it; "
                "a person must decide (resend may duplicate)")
        .execution_options(preserve_rowcount=True))
    return int(result.rowcount or 0)


def apply_receipt(session: Session, *, connector: str, event_key: str, now: datetime,
                  message_id: int | None = None, provider_id: str | None = None, status: str | None = None,
                  recipient: str | None = None,
                  code: str | None = None, occurred_at: datetime | None = None,
                  payload: Mapping[str, Any] | None = None) -> str:
    """Record one receipt and apply it to its message. The message is found by
    ``message_id`` (our id echoed as OutId/SessionContext, or matched by a
    status query) or by ``connector`` + ``provider_id``.

    The receipt inbox is unique per (connector, event_key): a provider that
    retries its callback changes nothing the second time. Delivery status only
    moves forward (pending → delivered | undelivered | failed). An ``unknown``
    row that the provider has on record becomes ``sent``: the question "did it
    go out?" is answered. Returns ``applied``, ``duplicate`` or ``no_message``.
    """
    conn = session.connection()
    row: Any = None
    if message_id is not None:
        row = conn.execute(select(_c.id, _c.status, _c.delivery_status, _c.provider_id)
                           .where(_c.id == message_id, _c.connector == connector)).first()
    if row is None and provider_id:
        # A batch send (Aliyun SendBatchSms) gives one BizId to up to 100
        # numbers: the receipt's number picks the row.
        found = conn.execute(select(_c.id, _c.status, _c.delivery_status, _c.provider_id, _c.recipient)
                             .where(_c.connector == connector, _c.provider_id == provider_id)
                             .order_by(_c.id).limit(1000)).all()
        wanted = _digits(recipient) if recipient else ""
        row = next((r for r in found if wanted and _digits(r.recipient) == wanted), None)
        if row is None and (len(found) == 1 or not wanted):
            row = found[0] if found else None
    inserted = insert_ignore(session, _receipts, [{
        "connector": connector, "event_key": event_key[:255], "provider_id": provider_id,
        "message_id": row.id if row is not None else message_id, "status": status,
        "code": (code or None) and code[:64], "payload": dict(payload or {}), "received_at": now}])
    if not inserted:
        return "duplicate"
    if row is None:
        return "no_message"
    values: dict[str, Any] = {}
    if _DELIVERY_RANK.get(status, 1) >= _DELIVERY_RANK.get(row.delivery_status, 1) and status:
        values.update(delivery_status=status, delivery_code=(code or None) and code[:64])
        if status in ("delivered", "undelivered", "failed"):
            values["delivered_at"] = occurred_at or now
    if provider_id and not row.provider_id:
        values["provider_id"] = provider_id
    if values:
        conn.execute(update(_outbox).where(_c.id == row.id).values(**values))
    if row.status == "unknown":
        # conditional: a person may have pressed "resend" since we read the row
        conn.execute(update(_outbox).where(_c.id == row.id, _c.status == "unknown")
                     .values(status="sent", sent_at=occurred_at or now, reconciled_at=now,
                             last_error="reconciled: the provider has it"))
    return "applied"


def _digits(number: str | None) -> str:
    return "".join(ch for ch in str(number or "") if ch.isdigit())[-11:]


# ------------------------------------------------------------ reading

#: Columns the messages page and API list (no body: it may hold personal data).
LIST_COLUMNS = ("id", "channel", "connector", "recipient", "subject", "delivery_class", "status", "attempts",
                "next_attempt_at", "provider_id", "last_error", "rule_id", "template_id", "customer_id",
                "created_at", "sent_at", "delivery_status", "delivered_at", "reconcile_checks")


def _filters(*, status: str | None = None, channel: str | None = None, rule_id: str | None = None,
             connector: str | None = None, created_from: datetime | None = None,
             created_before: datetime | None = None) -> list[Any]:
    where: list[Any] = []
    if status:
        where.append(_c.status == status)
    if channel:
        where.append(_c.channel == channel)
    if rule_id:
        where.append(_c.rule_id == rule_id)
    if connector:
        where.append(_c.connector == connector)
    if created_from is not None:
        where.append(_c.created_at >= created_from)
    if created_before is not None:
        where.append(_c.created_at < created_before)
    return where


def list_messages(session: Session, *, limit: int = 50, offset: int = 0,
                  **filters: Any) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Rows matching ``filters`` (status, channel, rule_id, connector,
    created_from, created_before: naive UTC), newest first; the total; and the
    counts per status under the same filters except ``status`` (so the page
    can show every status's number next to the filter)."""
    conn = session.connection()
    where = _filters(**filters)
    stmt = (select(*(_c[name] for name in LIST_COLUMNS)).where(*where)
            .order_by(_c.id.desc()).limit(limit).offset(offset))
    rows = [dict(r._mapping) for r in conn.execute(stmt)]
    total = int(conn.execute(select(func.count()).select_from(_outbox).where(*where)).scalar_one())
    without_status = _filters(**{**filters, "status": None})
    counts = {str(st): int(n) for st, n in conn.execute(
        select(_c.status, func.count()).where(*without_status).group_by(_c.status))}
    return rows, total, counts


def message_detail(session: Session, message_id: int) -> dict[str, Any] | None:
    """One row with its body, attempts and receipts, or None."""
    row = session.connection().execute(select(_outbox).where(_c.id == message_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    out["attempt_history"] = attempts_of(session, message_id)
    out["receipts"] = receipts_of(session, message_id)
    return out


def filter_choices(session: Session) -> dict[str, list[str]]:
    """Distinct channels, rules and connectors present (for the filter lists)."""
    conn = session.connection()
    return {name: sorted(str(v) for (v,) in conn.execute(select(_c[name]).distinct()) if v)
            for name in ("channel", "rule_id", "connector")}


def attempts_of(session: Session, message_id: int) -> list[dict[str, Any]]:
    """The attempt history of one message, oldest first."""
    stmt = select(_attempts).where(_attempts.c.message_id == message_id).order_by(_attempts.c.id)
    return [dict(r._mapping) for r in session.connection().execute(stmt)]


def receipts_of(session: Session, message_id: int) -> list[dict[str, Any]]:
    stmt = select(_receipts).where(_receipts.c.message_id == message_id).order_by(_receipts.c.id)
    return [dict(r._mapping) for r in session.connection().execute(stmt)]


def status_counts(session: Session) -> dict[str, int]:
    """Rows per status (tests, the bench, the messages page)."""
    return {s: int(n) for s, n in session.connection().execute(
        select(_c.status, func.count()).group_by(_c.status))}


__all__ = ["CLAIM_COLUMNS", "DUE_STATUSES", "LIST_COLUMNS", "apply_receipt", "attempts_of", "claim", "defer_due",
           "filter_choices", "list_messages", "mark_checked", "message_detail",
           "opted_out", "reap", "receipts_of", "recent_claims", "release", "resend", "settle", "status_counts",
           "unknown_rows"]


def waiting_counts(session: Session, connectors: Collection[str]) -> dict[str, int]:
    """Messages due to be sent (queued or retry) per connector of ``connectors``."""
    if not connectors:
        return {}
    stmt = (select(_c.connector, func.count()).where(_c.status.in_(DUE_STATUSES), _c.connector.in_(sorted(connectors)))
            .group_by(_c.connector))
    return {str(c): int(n) for c, n in session.execute(stmt)}


def note_waiting(session: Session, reasons: Mapping[str, str]) -> int:
    """Say on each waiting row (queued or retry) of a connector that cannot
    be built why it waits (``last_error``); rows that say so already are
    left alone. Returns rows updated."""
    done = 0
    for connector, reason in sorted(reasons.items()):
        result = session.connection().execute(
            update(_outbox).where(_c.connector == connector, _c.status.in_(DUE_STATUSES),
                                  or_(_c.last_error.is_(None), _c.last_error != reason))
            .values(last_error=reason).execution_options(preserve_rowcount=True))
        done += max(0, int(result.rowcount or 0))
    return done
