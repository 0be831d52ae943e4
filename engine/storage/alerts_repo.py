"""Alert firings (issue 14, item 6): record a breach once per period, list them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.orm import Session

from engine.storage.bulk import dialect_name, dialect_insert
from engine.storage.models import AlertFiring
from engine.storage.times import from_db_time, to_db_time

_t: Table = AlertFiring.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class FiringRow:
    id: int
    alert_id: str
    campaign_id: str
    period_key: str
    kpi: str
    value: float | None
    threshold: float
    fired_at: datetime
    notified: int


def record_firing(session: Session, *, alert_id: str, campaign_id: str, period_key: str, kpi: str,
                  value: float | None, threshold: float, now: datetime) -> int | None:
    """Insert the firing; its id, or None when this alert already fired for
    this campaign in this period (INSERT … ON CONFLICT DO NOTHING, so two
    schedulers racing insert one row)."""
    stmt = (dialect_insert(dialect_name(session), _t)
            .values(alert_id=alert_id, campaign_id=campaign_id, period_key=period_key, kpi=kpi, value=value,
                    threshold=threshold, fired_at=to_db_time(now), notified=0)
            .on_conflict_do_nothing().returning(_t.c.id))
    found = session.connection().execute(stmt).scalar_one_or_none()
    return None if found is None else int(found)


def set_notified(session: Session, firing_id: int, count: int) -> None:
    session.connection().execute(update(_t).where(_t.c.id == firing_id).values(notified=count))


def recent_firings(session: Session, *, limit: int = 200, offset: int = 0,
                   campaign_id: str | None = None) -> list[FiringRow]:
    """Newest first."""
    stmt = select(_t).order_by(_t.c.fired_at.desc(), _t.c.id.desc()).limit(limit).offset(offset)
    if campaign_id is not None:
        stmt = stmt.where(_t.c.campaign_id == campaign_id)
    return [_row(r) for r in session.connection().execute(stmt).mappings()]


def count_firings(session: Session, *, campaign_id: str | None = None) -> int:
    stmt = select(func.count()).select_from(_t)
    if campaign_id is not None:
        stmt = stmt.where(_t.c.campaign_id == campaign_id)
    return int(session.connection().execute(stmt).scalar_one())


def _row(r: Any) -> FiringRow:
    return FiringRow(int(r["id"]), r["alert_id"], r["campaign_id"], r["period_key"], r["kpi"],
                     None if r["value"] is None else float(r["value"]), float(r["threshold"]),
                     from_db_time(r["fired_at"]), int(r["notified"]))


def sms_failures(session: Session, campaign_id: str, since: datetime) -> tuple[int, int]:
    """(SMS messages written, of which failed) for the campaign's rules since
    ``since`` (aware): one aggregate over the outbox, with the KPI engine's
    meaning of "failed" (status failed/dead, or a failed/undelivered receipt).
    The campaign KPIs count failures over every channel; an SMS alert needs SMS alone."""
    row = session.connection().execute(text("""
        SELECT COUNT(*),
               SUM(CASE WHEN m.status IN ('failed', 'dead') OR m.delivery_status IN ('failed', 'undelivered')
                        THEN 1 ELSE 0 END)
        FROM outbox m
        WHERE m.channel = 'sms' AND m.customer_id IS NOT NULL AND m.created_at >= :since
          AND m.rule_id IN (SELECT ref FROM campaign_links WHERE campaign_id = :c AND kind = 'rule')"""),
        {"c": campaign_id, "since": to_db_time(since)}).one()
    return int(row[0] or 0), int(row[1] or 0)
