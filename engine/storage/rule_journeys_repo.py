"""The SQL behind what people read about a rule's journeys and runs (the
rules page and ``promoflow rules``/``journeys`` commands) and behind moving
journeys between rule versions on publish (``engine.automation.versions``).

Kept here so that the automation package holds the decisions and this module
the statements: SQLAlchemy stays inside ``engine.storage``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from engine.storage.models import Journey, RuleRun

__all__ = ["active_before_version", "active_step_counts", "active_to_migrate", "journey_counts", "journey_sample",
           "latest_publish_runs", "move_journeys", "runs_since"]

_j = Journey.__table__
_runs = RuleRun.__table__


def _active_old(rule_id: str, new_version: int | None) -> ColumnElement[bool]:
    cond = and_(_j.c.rule_id == rule_id, _j.c.status == "active")
    if new_version is not None:
        cond = and_(cond, _j.c.rule_version != new_version)
    return cond


def active_step_counts(session: Session, rule_id: str, *, not_version: int | None) -> list[tuple[str | None, int]]:
    """(step id, count) of the rule's active journeys not on ``not_version`` (all when None)."""
    stmt = select(_j.c.step_id, func.count()).where(_active_old(rule_id, not_version)).group_by(_j.c.step_id)
    return [(step_id, int(n)) for step_id, n in session.execute(stmt)]


def active_to_migrate(session: Session, rule_id: str, version: int, *, after_id: int,
                      limit: int) -> list[tuple[int, str | None, int | None, dict[str, Any] | None]]:
    """The next ``limit`` active journeys (id > ``after_id``) not on ``version``:
    (id, step id, step index, state), by id."""
    rows = session.execute(select(_j.c.id, _j.c.step_id, _j.c.step_index, _j.c.state)
                           .where(_active_old(rule_id, version), _j.c.id > after_id).order_by(_j.c.id).limit(limit))
    return [(int(jid), step_id, pc, state) for jid, step_id, pc, state in rows]


_MOVE = (update(_j).where(_j.c.id == bindparam("jid"))
         .values(rule_version=bindparam("to_version"), step_index=bindparam("pc"), state=bindparam("st")))


def move_journeys(session: Session, version: int, moves: Sequence[tuple[int, int, dict[str, Any] | None]]) -> None:
    """Put each (journey id, step index, state) of ``moves`` on rule ``version`` (one executemany)."""
    if moves:
        session.connection().execute(_MOVE, [{"jid": jid, "pc": pc, "st": st, "to_version": version}
                                             for jid, pc, st in moves])


def latest_publish_runs(session: Session) -> list[tuple[str, int, Any]]:
    """(rule id, version, detail) of each rule's latest ``publish`` run."""
    latest = (select(_runs.c.rule_id, func.max(_runs.c.id).label("id")).where(_runs.c.kind == "publish")
              .group_by(_runs.c.rule_id).subquery())
    rows = session.execute(select(_runs.c.rule_id, _runs.c.rule_version, _runs.c.detail)
                           .join(latest, latest.c.id == _runs.c.id))
    return [(rule_id, int(version), detail) for rule_id, version, detail in rows]


def active_before_version(session: Session, rule_id: str, version: int) -> int:
    """How many of the rule's journeys are active on a version older than ``version``."""
    return int(session.execute(select(func.count()).select_from(_j).where(
        _j.c.rule_id == rule_id, _j.c.status == "active", _j.c.rule_version < version)).scalar_one())


def runs_since(session: Session, rule_id: str, since: datetime, counters: Sequence[str]) -> list[Any]:
    """The rule's runs started at or after ``since`` (naive UTC), publishes
    left out: rows with ``kind``, ``started_at`` and each of ``counters``."""
    stmt = (select(_runs.c.kind, _runs.c.started_at, *[_runs.c[c] for c in counters])
            .where(_runs.c.rule_id == rule_id, _runs.c.started_at >= since, _runs.c.kind != "publish"))
    return list(session.execute(stmt))


def journey_counts(session: Session, rule_id: str) -> list[tuple[int, str | None, str, int]]:
    """(rule version, step id, status, count) of the rule's journeys."""
    stmt = (select(_j.c.rule_version, _j.c.step_id, _j.c.status, func.count())
            .where(_j.c.rule_id == rule_id).group_by(_j.c.rule_version, _j.c.step_id, _j.c.status)
            .order_by(_j.c.rule_version, _j.c.status, _j.c.step_id))
    return [(int(v), s, st, int(n)) for v, s, st, n in session.execute(stmt)]


def journey_sample(session: Session, rule_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The rule's latest ``limit`` journeys."""
    stmt = (select(_j.c.id, _j.c.subject_type, _j.c.subject_id, _j.c.rule_version, _j.c.step_id, _j.c.status,
                   _j.c.due_at, _j.c.entered_at).where(_j.c.rule_id == rule_id).order_by(_j.c.id.desc()).limit(limit))
    return [dict(r._mapping) for r in session.execute(stmt)]
