"""Campaign rows, their links and costs, and KPI snapshots (tables
``campaigns``, ``campaign_links``, ``campaign_costs``,
``campaign_kpi_snapshots``; migration 0022).

Statements run in the caller's transaction; times are naive UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from engine.storage.models import (
    Campaign,
    CampaignCost,
    CampaignKpiSnapshot,
    CampaignLink,
    Coupon,
    Event,
    Journey,
    MessageReceipt,
    OutboxMessage,
)
from engine.storage.results import affected

_campaigns: Table = Campaign.__table__  # type: ignore[assignment]
_links: Table = CampaignLink.__table__  # type: ignore[assignment]
_costs: Table = CampaignCost.__table__  # type: ignore[assignment]
_snaps: Table = CampaignKpiSnapshot.__table__  # type: ignore[assignment]

__all__ = [
    "add_cost",
    "by_record",
    "cost_totals",
    "costs_of",
    "end_now",
    "get",
    "links_of",
    "list_all",
    "put",
    "snapshot",
    "store_snapshot",
    "watermark",
]

LINK_KINDS = ("rule", "pool", "form")


def put(session: Session, row: Mapping[str, Any], links: Mapping[str, Iterable[str]], *, now: datetime) -> bool:
    """Insert or update one campaign and replace its links; True when new.
    ``row`` holds the ``campaigns`` columns except the timestamps."""
    found = session.execute(select(_campaigns).where(_campaigns.c.id == row["id"])).first()
    wanted = {(kind, ref) for kind in LINK_KINDS for ref in set(links.get(kind, ()))}
    if found is not None:
        have = set(session.execute(select(_links.c.kind, _links.c.ref).where(_links.c.campaign_id == row["id"])))
        same = all(_same(found._mapping[k], v) for k, v in row.items())
        if same and have == {tuple(x) for x in wanted}:
            return False  # nothing changed: keep updated_at, so KPI snapshots stay current
    if found is None:
        session.execute(insert(_campaigns).values(**row, created_at=now, updated_at=now))
    else:
        session.execute(update(_campaigns).where(_campaigns.c.id == row["id"]).values(**row, updated_at=now))
    session.execute(delete(_links).where(_links.c.campaign_id == row["id"]))
    values = [{"campaign_id": row["id"], "kind": kind, "ref": ref}
              for kind in LINK_KINDS for ref in sorted(set(links.get(kind, ())))]
    if values:
        session.execute(insert(_links), values)
    return found is None


def _same(stored: Any, wanted: Any) -> bool:
    if isinstance(stored, (Decimal, float, int)) and isinstance(wanted, (Decimal, float, int)) \
            and not isinstance(stored, bool):
        return Decimal(str(stored)) == Decimal(str(wanted))
    return bool(stored == wanted)


def by_record(session: Session, record_id: int) -> str | None:
    """The campaign created from request ``record_id``, if any."""
    return session.execute(select(_campaigns.c.id).where(_campaigns.c.record_id == record_id)).scalar()


def record_creator(session: Session, record_id: int) -> str | None:
    """Who submitted request ``record_id`` (the campaign's owner)."""
    from engine.storage.models import Record

    return session.execute(select(Record.created_by_name).where(Record.id == record_id)).scalar()


def get(session: Session, campaign_id: str) -> dict[str, Any] | None:
    row = session.execute(select(_campaigns).where(_campaigns.c.id == campaign_id)).first()
    return dict(row._mapping) if row is not None else None


def list_all(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(select(_campaigns).order_by(_campaigns.c.starts_on.desc(), _campaigns.c.id))
    return [dict(r._mapping) for r in rows]


def links_of(session: Session, campaign_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """``{campaign: {kind: [refs]}}`` for the given campaigns."""
    out: dict[str, dict[str, list[str]]] = {c: {k: [] for k in LINK_KINDS} for c in campaign_ids}
    if not campaign_ids:
        return out
    rows = session.execute(select(_links.c.campaign_id, _links.c.kind, _links.c.ref)
                           .where(_links.c.campaign_id.in_(list(campaign_ids)))
                           .order_by(_links.c.campaign_id, _links.c.kind, _links.c.ref))
    for cid, kind, ref in rows:
        out[cid].setdefault(kind, []).append(ref)
    return out


def end_now(session: Session, campaign_id: str, *, now: datetime) -> bool:
    """End a campaign early (explicit end); False when it was already ended."""
    done = session.execute(update(_campaigns).where(_campaigns.c.id == campaign_id, _campaigns.c.ended_at.is_(None))
                           .values(ended_at=now, updated_at=now))
    return bool(affected(done))


def add_cost(session: Session, campaign_id: str, *, category: str, amount: Decimal, incurred_on: date,
             note: str | None, by: str | None, now: datetime) -> int:
    result = session.execute(insert(_costs).values(campaign_id=campaign_id, category=category, amount=amount,
                                                   incurred_on=incurred_on, note=note, created_by=by,
                                                   created_at=now).returning(_costs.c.id))
    return int(result.scalar_one())


def costs_of(session: Session, campaign_id: str) -> list[dict[str, Any]]:
    rows = session.execute(select(_costs).where(_costs.c.campaign_id == campaign_id)
                           .order_by(_costs.c.incurred_on, _costs.c.id))
    return [dict(r._mapping) for r in rows]


def cost_totals(session: Session, campaign_id: str, start: date, end: date) -> dict[str, Decimal]:
    """Hand-entered costs by category incurred in [start, end] (local days)."""
    rows = session.execute(select(_costs.c.category, func.sum(_costs.c.amount))
                           .where(_costs.c.campaign_id == campaign_id, _costs.c.incurred_on >= start,
                                  _costs.c.incurred_on <= end)
                           .group_by(_costs.c.category))
    return {cat: Decimal(str(total or 0)).quantize(Decimal("0.01")) for cat, total in rows}


def watermark(session: Session, campaign_id: str) -> str:
    """What the KPIs depend on, as one string that changes whenever any of it
    may have: every loop-back fact appends an event (order, refund,
    redemption, click, feedback), delivery receipts and messages have their
    own ids, and the campaign row and its costs change ``updated_at``/ids.
    Each part is a primary-key maximum: cheap at any size."""
    parts = [
        session.execute(select(func.max(Event.id))).scalar(),
        session.execute(select(func.max(MessageReceipt.id))).scalar(),
        session.execute(select(func.max(OutboxMessage.id))).scalar(),
        session.execute(select(func.max(Journey.id))).scalar(),
        session.execute(select(func.max(Coupon.id))).scalar(),
        session.execute(select(func.max(_costs.c.id)).where(_costs.c.campaign_id == campaign_id)).scalar(),
        session.execute(select(_campaigns.c.updated_at).where(_campaigns.c.id == campaign_id)).scalar(),
    ]
    return "|".join("" if p is None else str(p) for p in parts)


def snapshot(session: Session, campaign_id: str, range_key: str) -> dict[str, Any] | None:
    row = session.execute(select(_snaps).where(_snaps.c.campaign_id == campaign_id,
                                               _snaps.c.range_key == range_key)).first()
    return dict(row._mapping) if row is not None else None


def store_snapshot(session: Session, campaign_id: str, range_key: str, *, watermark: str, body: dict[str, Any],
                   now: datetime) -> None:
    session.execute(delete(_snaps).where(_snaps.c.campaign_id == campaign_id, _snaps.c.range_key == range_key))
    session.execute(insert(_snaps).values(campaign_id=campaign_id, range_key=range_key, watermark=watermark,
                                          computed_at=now, body=body))


# --- the approval path (engine/campaigns/requests.py) --------------------------------
# The last approval runs on a lean transaction (engine.storage.workflows_repo.Lean: a
# driver connection, no ORM Session), so the campaign of an approved request is written
# with prepared Core statements on that connection.

def _prepared() -> dict[str, Any]:
    from engine.storage.models import Record
    from engine.storage.workflows_repo import Prepared

    columns = ("id", "title", "title_en", "source", "record_id", "owner", "channel", "budget", "starts_on",
               "ends_on", "attribution_days", "targets", "materials", "materials_cost", "created_at", "updated_at")
    return {
        "by_record": Prepared(select(_campaigns.c.id).where(_campaigns.c.record_id == bindparam("record_id"))),
        "creator": Prepared(select(Record.created_by_name).where(Record.id == bindparam("record_id"))),
        "insert": Prepared(insert(_campaigns), columns),
        "link": Prepared(insert(_links), ("campaign_id", "kind", "ref")),
    }


_PREPARED: dict[str, Any] = {}


def _p(name: str) -> Any:
    if not _PREPARED:
        _PREPARED.update(_prepared())
    return _PREPARED[name]


def insert_request_campaign(session: Any, row: Mapping[str, Any], links: Mapping[str, Iterable[str]], *,
                            now: datetime) -> bool:
    """Write the campaign of an approved request once (False when the
    request already has one); ``session`` is a Session or a Lean."""
    from engine.storage.workflows_repo import Db

    db = Db.of(session)
    if db.rows(_p("by_record"), {"record_id": row["record_id"]}):
        return False
    found = db.rows(_p("creator"), {"record_id": row["record_id"]})
    values = {"owner": found[0][0] if found else None, **row, "created_at": now, "updated_at": now}
    db.execute(_p("insert"), values)
    for kind in LINK_KINDS:
        for ref in sorted(set(links.get(kind, ()))):
            db.execute(_p("link"), {"campaign_id": row["id"], "kind": kind, "ref": ref})
    return True
