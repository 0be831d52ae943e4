"""Loyalty points over REST (issue 13):

* ``POST /api/v1/points/redeem`` ``{customer_id, points, idempotency_key,
  reason?}``: spend points, oldest first (201; the same key again answers
  the first redemption with 200; the key with another customer or amount is
  409; too few points is 422 with ``insufficient_points`` on ``points``).
* ``GET /api/v1/customers/<id>/points?page=&per_page=``: balance, the next
  lapse (day and points) and the ledger, newest first, paged.

Who: tokens of the ``integration`` role (tills, member systems) and admins.
The engine does the work (:mod:`engine.loyalty.points`).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, g, request

from engine.forms.errors import FieldError, ValidationFailed, to_json
from engine.loyalty.points import (
    IdempotencyConflict,
    PointsService,
    entry_json,
    parse_redeem,
)
from engine.storage.customers_view_repo import MAX_ID

from . import api, services
from .i18n import get_locale

bp = Blueprint("points_api", __name__, url_prefix="/api/v1")

#: Roles that may spend and read points (admin always may).
POINTS_ROLES = ("integration",)
MAX_PER_PAGE = 100


@bp.before_request
def _authenticate() -> Any:
    refused = api._authenticate()
    if refused is not None:
        return refused
    user = g.get("user")
    if user is None or not user.has_any(POINTS_ROLES):
        raise api.ApiError(403, "points need a token of the `integration` role (or admin)", "forbidden")
    return None


@bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _service() -> PointsService:
    svc = services()
    return PointsService(svc.session_factory, tz=svc.tz)


def _invalid(errors: list[FieldError]) -> Any:
    return api.json_response({"errors": to_json(errors, get_locale())}, 422)


@bp.post("/points/redeem")
def redeem() -> Any:
    try:
        customer_id, points, key, reason = parse_redeem(api._body())
        done = _service().redeem(customer_id, points, key=key, reason=reason, now=services().now())
    except ValidationFailed as exc:
        return _invalid(exc.errors)
    except IdempotencyConflict as exc:
        raise api.ApiError(409, str(exc), "conflict", entry=entry_json(exc.entry)) from None
    return api.json_response({"entry": done.entry, "balance": done.balance}, 200 if done.repeated else 201)


def _int_arg(raw: str | None, name: str, default: int, high: int) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise api.ApiError(400, f"`{name}` must be a whole number from 1 to {high}", "bad_parameter")
    return int(raw)


@bp.get("/customers/<int:customer_id>/points")
def account(customer_id: int) -> Any:
    page = _int_arg(request.args.get("page"), "page", 1, 1_000_000)
    per_page = _int_arg(request.args.get("per_page"), "per_page", 20, MAX_PER_PAGE)
    found = None if not 1 <= customer_id <= MAX_ID else _service().account(
        customer_id, now=services().now(), page=page, per_page=per_page)
    if found is None:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found")
    return api.json_response({
        "customer_id": found.customer_id, "balance": found.balance, "tier": found.tier,
        "next_expiry": ({"on": found.expire_on.isoformat(), "points": found.expiring}
                        if found.expire_on is not None else None),
        "total": found.total, "page": page, "per_page": per_page,
        "entries": [entry_json(e) for e in found.entries]})


def init_app(app: Flask, csrf: Any) -> None:
    """Register the blueprint; bearer tokens only, so no CSRF."""
    app.register_blueprint(bp)
    csrf.exempt(bp)


__all__ = ["POINTS_ROLES", "bp", "init_app"]
