"""Reading the audit log (writing is :mod:`engine.storage.audit`): filtered and
paged in SQL, newest first. Nothing here modifies the log (the database
refuses UPDATE and DELETE on it anyway)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from engine.storage.models import AuditEntry
from engine.storage.times import from_db_time

__all__ = ["AuditFilter", "AuditRow", "count_audit", "page_audit"]

_audit: Table = AuditEntry.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class AuditFilter:
    """Exact actor and action, target type (and id), ``since`` ≤ at < ``until`` (naive UTC)."""

    actor: str | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[Any]:
        c = _audit.c
        out: list[Any] = []
        for column, value in ((c.actor, self.actor), (c.action, self.action), (c.entity_type, self.entity_type),
                              (c.entity_id, self.entity_id)):
            if value is not None:
                out.append(column == value)
        if self.since is not None:
            out.append(c.at >= self.since)
        if self.until is not None:
            out.append(c.at < self.until)
        return out


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime  # aware UTC
    actor: str | None
    action: str
    entity_type: str
    entity_id: str | None
    diff: dict[str, Any] | None


def count_audit(session: Session, where: AuditFilter) -> int:
    return int(session.execute(select(func.count()).select_from(_audit).where(*where.clauses())).scalar_one())


def page_audit(session: Session, where: AuditFilter, *, offset: int, limit: int) -> list[AuditRow]:
    stmt = select(_audit).where(*where.clauses()).order_by(_audit.c.id.desc()).offset(offset).limit(limit)
    return [AuditRow(int(r.id), from_db_time(r.at), r.actor, r.action, r.entity_type, r.entity_id, r.diff)
            for r in session.execute(stmt)]
