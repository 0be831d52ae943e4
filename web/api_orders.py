"""Orders in over REST (``/api/v1/orders``): tills, shops and member systems
push orders, refunds and cancellations. Tokens of the ``integration`` role
(or admin) only; everything else is :mod:`engine.orders`.

``POST /orders`` answers 201 (created), 200 (the same order again), 409 (the
same source and external id with another content) or 422 (field errors, an
unknown customer among them). ``POST /orders/batch`` takes up to 1,000 orders
and answers 200 with one result per item.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint, g, request, url_for

from engine.forms.errors import FieldError, ValidationFailed, to_json
from engine.orders import (
    MAX_BATCH,
    ItemResult,
    OrderNotFound,
    OrderService,
    OrderStateConflict,
    parse_money,
    parse_text,
)

from . import api, services
from .i18n import get_locale

bp = Blueprint("orders_api", __name__, url_prefix="/api/v1/orders")

#: Roles that may push orders (besides admin).
ORDER_ROLES = ("integration",)
#: A batch of 1,000 orders with their lines is larger than the API's default limit.
BATCH_MAX_CONTENT_LENGTH = 16 * 1024 * 1024


@bp.before_request
def _authenticate() -> Any:
    refused = api._authenticate()
    if refused is not None:
        return refused
    if request.endpoint == "orders_api.create_batch":
        request.max_content_length = BATCH_MAX_CONTENT_LENGTH
    user = g.get("user")
    if user is None or not user.has_any(ORDER_ROLES):
        raise api.ApiError(403, "orders need a token of the `integration` role (or admin)", "forbidden")
    return None


@bp.record_once
def _no_csrf(state: Any) -> None:
    """Bearer tokens only, no cookies: nothing for CSRF to protect."""
    state.app.extensions["csrf"].exempt(bp)


@bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _service() -> OrderService:
    svc = services()
    return OrderService(svc.session_factory, tz=svc.tz, coupon_pools=lambda: svc.registry.current().coupon_pools,
                        points_policy=lambda: svc.registry.current().points_policy)


def _invalid(errors: list[FieldError]) -> Any:
    return api.json_response({"errors": to_json(errors, get_locale())}, 422)


def _item_json(result: ItemResult) -> dict[str, Any]:
    out: dict[str, Any] = {"index": result.index, "status": result.outcome}
    if result.row is not None:
        out["id"] = int(result.row["id"])
    if result.outcome == "conflict":
        out["order"] = result.order  # what is stored under the key
    if result.errors:
        out["errors"] = to_json(result.errors, get_locale())
    return out


def _location(order: dict[str, Any]) -> str:
    return url_for("orders_api.get_order", source=order["source"], external_id=order["external_id"])


@bp.post("")
def create_order() -> Any:
    payload = api._body()
    svc = services()
    [result] = _service().ingest([payload], now=svc.now())
    if result.outcome == "invalid":
        return _invalid(result.errors)
    assert result.order is not None
    if result.outcome == "conflict":
        raise api.ApiError(409, f"order `{result.order['external_id']}` from `{result.order['source']}` is already "
                                "stored with other content", "conflict", order=result.order)
    status = 201 if result.outcome == "created" else 200
    return api.json_response(result.order, status, Location=_location(result.order))


@bp.post("/batch")
def create_batch() -> Any:
    payload = api._body()
    if not isinstance(payload, dict) or not isinstance(payload.get("orders"), list):
        return _invalid([FieldError("orders", "list_type")])
    orders = payload["orders"]
    if not orders:
        return _invalid([FieldError("orders", "required")])
    if len(orders) > MAX_BATCH:
        return _invalid([FieldError("orders", "too_many_items", {"max_items": MAX_BATCH})])
    svc = services()
    results = _service().ingest(orders, now=svc.now())
    counts = {k: 0 for k in ("created", "existing", "conflict", "invalid")}
    for r in results:
        counts[r.outcome] += 1
    return api.json_response({"results": [_item_json(r) for r in results], "counts": counts})


def _found(call: Any) -> Any:
    try:
        return call()
    except OrderNotFound as exc:
        raise api.ApiError(404, str(exc), "not_found") from None
    except OrderStateConflict as exc:
        raise api.ApiError(409, str(exc), exc.code) from None
    except ValidationFailed as exc:
        return _invalid(exc.errors)


@bp.get("/<source>/<external_id>")
def get_order(source: str, external_id: str) -> Any:
    order = _found(lambda: _service().get(source, external_id))
    return api.json_response(order)


def _optional_body() -> dict[str, Any]:
    if not request.get_data(cache=True).strip():
        return {}
    body = api._body()
    if not isinstance(body, dict):
        raise api.ApiError(400, "send a JSON object")
    return body


@bp.post("/<source>/<external_id>/refund")
def refund_order(source: str, external_id: str) -> Any:
    body = _optional_body()
    errors: list[FieldError] = [FieldError(k, "unknown_field") for k in body if k not in ("amount", "refund_id")]
    amount: Decimal | None = parse_money(body.get("amount"), "amount", errors)
    refund_id = parse_text(body.get("refund_id"), "refund_id", 128, errors)
    if errors:
        return _invalid(errors)
    svc = services()
    change = _found(lambda: _service().refund(source, external_id, amount=amount, refund_id=refund_id,
                                              now=svc.now()))
    if not hasattr(change, "order"):
        return change  # a 422
    return api.json_response({**change.order, "applied": change.applied})


@bp.post("/<source>/<external_id>/cancel")
def cancel_order(source: str, external_id: str) -> Any:
    svc = services()
    change = _found(lambda: _service().cancel(source, external_id, now=svc.now()))
    return api.json_response({**change.order, "applied": change.applied})


__all__ = ["ORDER_ROLES", "bp"]
