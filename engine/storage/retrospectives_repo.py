"""Campaign retrospectives (复盘, issue 14, item 7): created once when a
campaign ends, edited by the team, searched with past campaigns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import CampaignRetrospective
from engine.storage.times import from_db_time, to_db_time

_t: Table = CampaignRetrospective.__table__  # type: ignore[assignment]
#: Fields of the lessons form, in order.
LESSON_FIELDS = ("went_well", "to_improve", "lessons", "next_actions")


@dataclass(frozen=True)
class Retrospective:
    campaign_id: str
    title: str
    ended_on: date | None
    kpis: Mapping[str, Any]
    lessons: Mapping[str, str]
    created_at: datetime
    updated_at: datetime
    updated_by: str | None
    version: int


def _row(r: Any) -> Retrospective:
    return Retrospective(r["campaign_id"], r["title"], r["ended_on"], r["kpis"] or {}, r["lessons"] or {},
                         from_db_time(r["created_at"]), from_db_time(r["updated_at"]), r["updated_by"],
                         int(r["version"]))


def _search_text(title: str, lessons: Mapping[str, Any]) -> str:
    return " ".join([title, *(str(lessons.get(k) or "") for k in LESSON_FIELDS)]).lower()


def create(session: Session, *, campaign_id: str, title: str, ended_on: date | None, kpis: Mapping[str, Any],
           now: datetime) -> bool:
    """Create the retrospective pre-filled with ``kpis``; False when it exists
    (a campaign ends once: a second end, or a second scheduler, changes nothing)."""
    stamp = to_db_time(now)
    stmt = (dialect_insert(dialect_name(session), _t)
            .values(campaign_id=campaign_id, title=title[:255], ended_on=ended_on, kpis=dict(kpis), lessons={},
                    search_text=_search_text(title, {}), created_at=stamp, updated_at=stamp, updated_by=None,
                    version=1)
            .on_conflict_do_nothing().returning(_t.c.campaign_id))
    return session.connection().execute(stmt).scalar_one_or_none() is not None


def get(session: Session, campaign_id: str) -> Retrospective | None:
    found = session.connection().execute(select(_t).where(_t.c.campaign_id == campaign_id)).mappings().first()
    return None if found is None else _row(found)


def save_lessons(session: Session, campaign_id: str, lessons: Mapping[str, str], *, version: int, by: str,
                 now: datetime) -> bool:
    """Store the team's lessons if nobody saved since ``version``; False on a conflict."""
    current = get(session, campaign_id)
    if current is None:
        return False
    clean = {k: str(lessons.get(k) or "") for k in LESSON_FIELDS}
    done = session.connection().execute(
        update(_t).where(_t.c.campaign_id == campaign_id, _t.c.version == version)
        .values(lessons=clean, search_text=_search_text(current.title, clean), updated_at=to_db_time(now),
                updated_by=by, version=version + 1))
    return bool(done.rowcount)


def existing_ids(session: Session, campaign_ids: list[str]) -> set[str]:
    """Which of ``campaign_ids`` already have a retrospective."""
    if not campaign_ids:
        return set()
    stmt = select(_t.c.campaign_id).where(_t.c.campaign_id.in_(campaign_ids))
    return set(session.connection().execute(stmt).scalars())


def search(session: Session, text: str | None, *, limit: int = 50) -> list[Retrospective]:
    """Retrospectives whose title or lessons contain ``text`` (case-insensitive),
    most recently ended first; all of them without ``text``."""
    stmt = select(_t).order_by(_t.c.ended_on.desc(), _t.c.campaign_id).limit(limit)
    if text:
        needle = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(or_(_t.c.search_text.like(f"%{needle}%", escape="\\"),
                              _t.c.campaign_id.like(f"%{needle}%", escape="\\")))
    return [_row(r) for r in session.connection().execute(stmt).mappings()]
