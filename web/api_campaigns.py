"""Campaigns over REST (``/api/v1/campaigns``, issue 14): the list with
status, one campaign, its KPIs over a range, and its hand-entered costs.

Reading is for the marketing roles, finance and store managers (and admin);
adding a cost or ending a campaign for marketing managers, finance and
admin. Money is a decimal string with two places and times ISO 8601 UTC
(``Z``), as in the orders API; rates are fractions. ``from``/``to`` take a
date (a business-zone day; ``to`` inclusive) or a date-time with an offset.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, request

from engine.campaigns.kpis import kpis_to_json
from engine.campaigns.service import CAMPAIGN_STATUSES, CampaignNotFound, CampaignService
from engine.forms.errors import FieldError, ValidationFailed, to_json

from . import api, services
from .i18n import get_locale

bp = Blueprint("campaigns_api", __name__, url_prefix="/api/v1/campaigns")
EXTENSION = "promoflow.campaigns"

#: Roles that may read campaigns and their KPIs (besides admin).
READER_ROLES = ("marketing", "marketing_manager", "marketing_director", "finance", "store_manager")
#: Roles that may add costs and end a campaign (besides admin).
WRITER_ROLES = ("marketing_manager", "marketing_director", "finance")
STATUSES = CAMPAIGN_STATUSES


def campaigns(app: Any = None) -> CampaignService:
    """The app's CampaignService (made on first use)."""
    app = app or current_app
    found = app.extensions.get(EXTENSION)
    if found is None:
        svc = app.extensions["promoflow"]
        found = app.extensions[EXTENSION] = CampaignService(svc.session_factory, tz=svc.settings.timezone,
                                                            definitions=svc.registry.current)
    return found  # type: ignore[no-any-return]


def tick(services_: Any) -> Any:
    """The scheduler's ``campaigns`` tick (web/worker.py): refresh stale KPI snapshots."""
    svc = CampaignService(services_.session_factory, tz=services_.settings.timezone,
                          definitions=services_.registry.current)
    return svc.tick


@bp.before_request
def _authenticate() -> Any:
    refused = api._authenticate()
    if refused is not None:
        return refused
    user = g.get("user")
    writing = request.method == "POST"
    roles = WRITER_ROLES if writing else READER_ROLES
    if user is None or not (user.has_any(roles) or user.has_any(("admin",))):
        what = "changing a campaign" if writing else "campaigns"
        raise api.ApiError(403, f"{what} need a token of the roles {', '.join(roles)} (or admin)", "forbidden")
    return None


@bp.record_once
def _no_csrf(state: Any) -> None:
    """Bearer tokens only, no cookies: nothing for CSRF to protect."""
    state.app.extensions["csrf"].exempt(bp)


@bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


@bp.errorhandler(CampaignNotFound)
def _not_found(exc: CampaignNotFound) -> Any:
    return api._api_error(api.ApiError(404, f"no campaign `{exc.args[0]}`", "not_found"))


@bp.errorhandler(ValidationFailed)
def _invalid(exc: ValidationFailed) -> Any:
    return api.json_response({"errors": to_json(exc.errors, get_locale())}, 422)


@bp.get("")
def list_campaigns() -> Any:
    """Every campaign with its status (``?status=planned|running|ended``)."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:  # a bad query enum is a 400 naming it, as on every list
        raise api.ApiError(400, f"`status` must be one of {', '.join(STATUSES)}", "bad_parameter")
    items = [v.to_json() for v in campaigns().list(now=services().now(), status=status)]
    return api.json_response({"items": items, "count": len(items)})


@bp.get("/<campaign_id>")
def get_campaign(campaign_id: str) -> Any:
    return api.json_response(campaigns().get(campaign_id, now=services().now()).to_json())


def _moment(value: str | None, name: str, tz: ZoneInfo, *, end: bool, errors: list[FieldError]) -> datetime | None:
    raw = (value or "").strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day + timedelta(days=1) if end else day, time(0), tz)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    except ValueError:
        errors.append(FieldError(name, "datetime_type"))
        return None


@bp.get("/<campaign_id>/kpis")
def get_kpis(campaign_id: str) -> Any:
    """The campaign's KPIs over ``from``–``to`` (default: its whole range)."""
    svc = services()
    tz = ZoneInfo(svc.settings.timezone)
    errors: list[FieldError] = []
    start = _moment(request.args.get("from"), "from", tz, end=False, errors=errors)
    end = _moment(request.args.get("to"), "to", tz, end=True, errors=errors)
    if start is not None and end is not None and end <= start:
        errors.append(FieldError("to", "after", {"other_label": "from", "other_label_en": "from"}))
    if errors:
        raise ValidationFailed(errors)
    service = campaigns()
    view = service.get(campaign_id, now=svc.now())
    if start is not None or end is not None:
        d_start, d_end = service.default_range(view)
        start, end = start or d_start, end or d_end
    kpis = service.kpis(campaign_id, now=svc.now(), start=start, end=end,
                        refresh=request.args.get("refresh") in ("1", "true"),
                        total_revenue=request.args.get("total_revenue") in ("1", "true"))
    return api.json_response(kpis_to_json(kpis))


@bp.get("/<campaign_id>/costs")
def list_costs(campaign_id: str) -> Any:
    items = campaigns().costs(campaign_id)
    return api.json_response({"items": items, "count": len(items)})


@bp.post("/<campaign_id>/costs")
def add_cost(campaign_id: str) -> Any:
    """Add a cost: ``{"category": "labour|media|materials|other", "amount": "1200.00",
    "incurred_on": "2026-12-01", "note": "…"}`` → 201, or 422 with field errors."""
    body = api._body()
    user = g.get("user")
    row = campaigns().add_cost(campaign_id, body, by=getattr(user, "username", None), now=services().now())
    return api.json_response(row, 201)


@bp.post("/<campaign_id>/end")
def end_campaign(campaign_id: str) -> Any:
    """End the campaign now (its status becomes ended; KPIs keep counting the attribution window)."""
    return api.json_response(campaigns().end(campaign_id, now=services().now()).to_json())
