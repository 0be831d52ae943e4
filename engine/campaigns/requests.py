"""An approved request becomes a campaign (issue 14, item 1).

A form says which of its fields hold the campaign's parts (``campaign:`` in
the form definition, see forms/activity/activity_request.yaml). When the
record's approval flow ends approved, :func:`create_from_request` runs in the
same transaction as that last approval, so a request is approved and its
campaign exists together or not at all; the record id is unique on the
campaign, so a repeated approval writes nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from engine.campaigns.service import linked_pools, materials_total
from engine.definitions.catalog import TARGET_METRICS
from engine.definitions.loader import DefinitionSet
from engine.definitions.specs import FormSpec
from engine.storage import campaigns_repo as repo

__all__ = ["campaign_id_for", "create_from_request"]

CENT = Decimal("0.01")
DEFAULT_WINDOW_DAYS = 7


def campaign_id_for(record_id: int) -> str:
    """The id of the campaign created from request ``record_id``."""
    return f"request_{record_id}"


def _money(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)).quantize(CENT) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)] if value not in (None, "") else []


def _materials(rows: Any) -> list[dict[str, Any]]:
    out = []
    for row in rows if isinstance(rows, list) else ():
        if not isinstance(row, dict):
            continue
        qty, unit = row.get("qty"), _money(row.get("unit_cost"))
        if not isinstance(qty, int) or unit is None:
            continue
        out.append({"category": "materials", "item": row.get("item"), "qty": qty, "unit_cost": f"{unit:.2f}",
                    "amount": f"{(unit * qty).quantize(CENT):.2f}"})
    return out


def _targets(rows: Any) -> list[dict[str, str]]:
    out = []
    for row in rows if isinstance(rows, list) else ():
        if isinstance(row, dict) and row.get("metric") in TARGET_METRICS and row.get("target") is not None:
            out.append({"metric": str(row["metric"]), "target": str(row["target"])})
    return out


def create_from_request(session: Session | Any, form: FormSpec, definitions: DefinitionSet, *, record_id: int,
                        data: Mapping[str, Any], now: datetime) -> str | None:
    """Write the campaign of an approved record of ``form`` (``now`` naive
    UTC); None when the form makes no campaigns or it already exists."""
    parts = form.campaign
    if parts is None:
        return None

    def field(part: str) -> Any:
        key = parts.get(part)
        return data.get(key) if key else None

    start, end = field("start"), field("end")
    starts_on = date.fromisoformat(start) if isinstance(start, str) else now.date()
    ends_on = date.fromisoformat(end) if isinstance(end, str) else starts_on
    rules = _list(field("rules"))
    pools = set(_list(field("coupon_pools"))) | linked_pools(definitions.rules, rules)
    window = field("attribution_window")
    materials = _materials(field("materials"))
    cid = campaign_id_for(record_id)
    channel = field("channel")
    made = repo.insert_request_campaign(session, {
        "id": cid, "title": str(field("title") or cid)[:255], "title_en": None, "source": "request",
        "record_id": record_id, "channel": str(channel)[:32] if channel else None,
        "budget": _money(field("budget")), "starts_on": starts_on, "ends_on": max(starts_on, ends_on),
        "attribution_days": window if isinstance(window, int) and window > 0 else DEFAULT_WINDOW_DAYS,
        "targets": _targets(field("targets")), "materials": materials, "materials_cost": materials_total(materials),
    }, {"rule": rules, "pool": pools, "form": [form.id]}, now=now)
    return cid if made else None
