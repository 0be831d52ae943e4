"""Looking at the audit trail: the filters an admin gives (actor, action,
target, a range of business-time dates) checked and turned into an
:class:`engine.storage.audit_repo.AuditFilter`, and one page of entries.

Shared by the ``/audit`` page and ``GET /api/v1/audit``; the same input gives
the same entries through both. Dates are days in the business time zone
(``from`` and ``to`` both inclusive), so "today" means the admin's today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from engine.storage.audit import append_audit
from engine.storage.audit_repo import AuditFilter, AuditRow, count_audit, page_audit
from engine.storage.database import transaction
from engine.storage.times import to_db_time

__all__ = ["AuditPage", "AuditQueryError", "PER_PAGE", "audit_alone", "audit_page", "parse_audit_query"]

PER_PAGE = 50
MAX_PER_PAGE = 500
#: Beyond this a page number only asks the database to skip rows for nothing.
MAX_PAGE = 1_000_000
_TEXT_LIMIT = 128
#: Dates outside these years are refused (the database cannot store them everywhere).
_YEARS = (2000, 2999)


@dataclass(frozen=True)
class Problem:
    field: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class AuditQueryError(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class AuditQuery:
    where: AuditFilter
    page: int = 1
    per_page: int = PER_PAGE


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _day(raw: str, field: str, problems: list[Problem]) -> date | None:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        problems.append(Problem(field, "invalid_date", f"`{field}` must be a date like 2026-03-01"))
        return None
    if not _YEARS[0] <= day.year <= _YEARS[1]:
        problems.append(Problem(field, "out_of_range", f"`{field}` must be between {_YEARS[0]} and {_YEARS[1]}"))
        return None
    return day


def _int(raw: str | None, field: str, default: int, top: int, problems: list[Problem]) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or not 1 <= int(raw) <= top:
        problems.append(Problem(field, "out_of_range", f"`{field}` must be a whole number from 1 to {top}"))
        return default
    return int(raw)


def parse_audit_query(args: Mapping[str, str], *, tz: str) -> AuditQuery:
    """Check the filters (``actor``, ``action``, ``target`` as ``type`` or
    ``type:id``, ``from``/``to`` dates, ``page``, ``per_page``). Raises AuditQueryError."""
    problems: list[Problem] = []
    text: dict[str, str | None] = {}
    for name in ("actor", "action", "target"):
        value = (args.get(name) or "").strip()
        if len(value) > _TEXT_LIMIT * 2 or any(ord(ch) < 32 for ch in value):
            problems.append(Problem(name, "invalid", f"`{name}` is too long or holds control characters"))
            value = ""
        text[name] = value or None
    entity_type = entity_id = None
    if text["target"]:
        entity_type, _, rest = text["target"].partition(":")
        entity_type, entity_id = entity_type.strip() or None, rest.strip() or None
    zone = ZoneInfo(tz)
    since = until = None
    if args.get("from"):
        day = _day(args["from"], "from", problems)
        since = None if day is None else to_db_time(datetime.combine(day, time(), zone))
    if args.get("to"):
        day = _day(args["to"], "to", problems)
        until = None if day is None else to_db_time(datetime.combine(day + timedelta(days=1), time(), zone))
    if since is not None and until is not None and until <= since:
        problems.append(Problem("to", "before_from", "`to` is before `from`"))
    page = _int(args.get("page"), "page", 1, MAX_PAGE, problems)
    per_page = _int(args.get("per_page"), "per_page", PER_PAGE, MAX_PER_PAGE, problems)
    if problems:
        raise AuditQueryError(problems)
    where = AuditFilter(actor=text["actor"], action=text["action"], entity_type=entity_type, entity_id=entity_id,
                        since=since, until=until)
    return AuditQuery(where, page, per_page)


def audit_page(session: Session, query: AuditQuery) -> AuditPage:
    """One page of entries, newest first, and how many match."""
    rows = page_audit(session, query.where, offset=(query.page - 1) * query.per_page, limit=query.per_page)
    return AuditPage(rows, count_audit(session, query.where), query.page, query.per_page)


def audit_alone(session_factory: sessionmaker[Session], *, now: datetime, actor: str | None, action: str,
                entity_type: str, entity_id: str | int | None, diff: dict[str, Any] | None) -> None:
    """One audit entry in its own transaction, for an act that changes nothing
    else (a CSV export): it is written before the data leaves."""
    with transaction(session_factory) as session:
        append_audit(session, at=now, actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                     diff=diff)
