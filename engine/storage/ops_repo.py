"""Read-only queries for operations: readiness and the Prometheus scrape.

Each is one grouped statement, cheap enough to run at every scrape (the
outbox is grouped by its indexed ``status`` first).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, Table, func, select, text

from engine.storage.models import OutboxMessage, RuleRun

_outbox: Table = OutboxMessage.__table__  # type: ignore[assignment]
_runs: Table = RuleRun.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class OutboxCount:
    status: str
    connector: str
    count: int


@dataclass(frozen=True)
class RuleRunTotals:
    rule_id: str
    kind: str
    runs: int
    entered: int
    sent: int
    errors: int


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def outbox_counts(engine: Engine) -> list[OutboxCount]:
    """Outbox rows by status and connector (``""`` when no connector was picked yet)."""
    statement = (select(_outbox.c.status, _outbox.c.connector, func.count())
                 .group_by(_outbox.c.status, _outbox.c.connector))
    with engine.connect() as conn:
        return [OutboxCount(status, connector or "", int(count))
                for status, connector, count in conn.execute(statement)]


def rule_run_totals(engine: Engine) -> list[RuleRunTotals]:
    """Runs and their counters summed per rule and kind (monotonic: rows are only added)."""
    statement = (select(_runs.c.rule_id, _runs.c.kind, func.count(), func.coalesce(func.sum(_runs.c.entered), 0),
                        func.coalesce(func.sum(_runs.c.sent), 0), func.coalesce(func.sum(_runs.c.errors), 0))
                 .group_by(_runs.c.rule_id, _runs.c.kind))
    with engine.connect() as conn:
        return [RuleRunTotals(rule_id, kind, int(runs), int(entered), int(sent), int(errors))
                for rule_id, kind, runs, entered, sent, errors in conn.execute(statement)]


def advisory_lock_holder(engine: Engine, key: int) -> int | None:
    """PostgreSQL: the backend pid holding session advisory lock ``key`` (None: nobody)."""
    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    statement = text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND classid::bigint = :c AND objid::bigint = :o AND objsubid = 1")
    with engine.connect() as conn:
        row = conn.execute(statement, {"c": classid, "o": objid}).first()
    return int(row[0]) if row else None


__all__ = ["OutboxCount", "RuleRunTotals", "advisory_lock_holder", "outbox_counts", "ping", "rule_run_totals"]
