"""Coupon redemption API (核销) under ``/api/v1/coupons``: bearer tokens like
the rest of the API; for tills and shop systems (``integration``), store staff
and admins.

* ``POST /redeem``: 200 ``redeemed`` (again for a repeat of the same order:
  ``replayed: true``); 422 ``refused`` with the reason code, its zh/en message
  and the house field errors (so a till shows it beside the field to fix).
* ``GET /<code>``: whether it would be redeemed now, or why not (404: no such code).
* ``POST /<code>/void``: the order was refunded: the coupon is usable again
  (or, with ``cancel: true``, void for good).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, current_app, g, request

from engine.coupons import CheckResult, CouponService, RedeemRequest, RedeemResult

from . import api, services
from .i18n_coupons import reason_texts

bp = Blueprint("coupons_api", __name__, url_prefix="/api/v1/coupons")

#: Who may redeem, check and void coupons through the API (admins too).
COUPON_ROLES = frozenset({"integration", "staff", "store_manager"})
#: Which request field a refusal points at (the field a till should look at).
REASON_FIELD = {"unknown": "code", "not_yours": "customer_id", "below_min_order": "order_amount",
                "velocity": "store", "blacklisted": "phone", "not_new_customer": "customer_id",
                "limit_per_customer": "customer_id", "limit_per_phone": "phone"}
_REDEEM_KEYS = ("code", "customer_id", "phone", "order_id", "order_amount", "store", "device")


def coupon_service() -> CouponService:
    """The app's redemption service (built on first use)."""
    ext = current_app.extensions
    svc = ext.get("promoflow.coupons")
    if svc is None:
        s = services()
        svc = ext["promoflow.coupons"] = CouponService(s.session_factory, s.registry, tz=s.tz)
    return svc  # type: ignore[no-any-return]


@bp.before_request
def _authenticate() -> Any:
    return api._authenticate()


@bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _user() -> Any:
    user = g.get("user")
    if user is None or not (user.is_admin or user.roles & COUPON_ROLES):
        raise api.ApiError(403, "coupons are redeemed by tills (integration), store staff and admins", "forbidden")
    return user


def _error(field: str, code: str, message: str) -> dict[str, str]:
    return {"field": field, "code": code, "message": message}


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors


def _text(body: dict[str, Any], key: str, errors: list, *, required: bool = False, size: int = 128) -> str | None:
    value = body.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(_error(key, "required", f"`{key}` is required"))
        return None
    if not isinstance(value, str) or len(value) > size:
        errors.append(_error(key, "type", f"`{key}` must be text of at most {size} characters"))
        return None
    return value.strip()


def _amount(raw: Any, key: str, errors: list, *, required: bool) -> Decimal | None:
    if raw is None or raw == "":
        if required:
            errors.append(_error(key, "required", f"`{key}` is required"))
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        errors.append(_error(key, "type", f"`{key}` must be an amount such as 199.00"))
        return None
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        errors.append(_error(key, "type", f"`{key}` must be an amount such as 199.00"))
        return None
    if not value.is_finite() or value < 0 or value >= Decimal("1e12") or value != value.quantize(Decimal("0.01")):
        errors.append(_error(key, "range", f"`{key}` must be an amount of 0 or more with at most 2 decimals"))
        return None
    return value


def _customer_id(raw: Any, errors: list) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0 or raw > 2**63 - 1:
        errors.append(_error("customer_id", "type", "`customer_id` must be a customer id, a whole number"))
        return None
    return raw


def _redeem_request(body: Any, actor: str) -> RedeemRequest:
    if not isinstance(body, dict):
        raise _Invalid([_error("", "type", "send a JSON object such as "
                                           '{"code": "WB20KBEV2MSTRH", "phone": "13800001234", '
                                           '"order_id": "POS-1", "order_amount": "199.00"}')])
    errors: list[dict[str, str]] = []
    for key in sorted(set(body) - set(_REDEEM_KEYS)):
        errors.append(_error(str(key)[:64], "unknown", f"unknown key; send {', '.join(_REDEEM_KEYS)}"))
    code = _text(body, "code", errors, required=True, size=64)
    order_id = _text(body, "order_id", errors, required=True)
    amount = _amount(body.get("order_amount"), "order_amount", errors, required=True)
    customer_id = _customer_id(body.get("customer_id"), errors)
    phone = _text(body, "phone", errors, size=32)
    if customer_id is None and phone is None and not any(e["field"] in ("customer_id", "phone") for e in errors):
        errors.append(_error("customer_id", "required", "send `customer_id` or `phone`: who presents the coupon"))
    store, device = _text(body, "store", errors, size=64), _text(body, "device", errors)
    if errors:
        raise _Invalid(errors)
    assert code is not None and order_id is not None
    return RedeemRequest(code=code, order_id=order_id, order_amount=amount, customer_id=customer_id, phone=phone,
                         store=store, device=device, actor=actor)


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _time(value: datetime | None) -> str | None:
    """An aware or naive-UTC (as stored) time as ISO 8601 UTC with ``Z``."""
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def result_json(result: RedeemResult) -> dict[str, Any]:
    """A redemption result as the API (and the till's script) sees it."""
    body: dict[str, Any] = {
        "status": result.status, "code": result.code, "order_id": result.order_id,
        "coupon_id": result.coupon_id, "pool": result.pool_id, "customer_id": result.customer_id,
        "value": _money(result.value), "redeemed_at": _time(result.redeemed_at), "replayed": result.replayed,
        "reason": result.reason, "message": None,
    }
    if result.reason is not None:
        body["message"] = reason_texts(result.reason, min_order=_money(result.min_order) or "")
    return body


@bp.post("/redeem")
def redeem() -> Any:
    user = _user()
    try:
        req = _redeem_request(api._body(), user.username)
    except _Invalid as exc:
        return api.json_response({"errors": exc.errors}, 422)
    result = coupon_service().redeem(req, now=services().now())
    body = result_json(result)
    if result.ok:
        return api.json_response(body)
    message = body["message"]["en" if _english() else "zh"]
    body["errors"] = [_error(REASON_FIELD.get(result.reason or "", "code"), result.reason or "refused", message)]
    return api.json_response(body, 422)


def _english() -> bool:
    from .i18n import get_locale

    return get_locale() == "en"


def check_json(result: CheckResult) -> dict[str, Any]:
    row = result.coupon
    return {
        "code": result.code, "valid": result.valid, "reason": result.reason,
        "message": reason_texts(result.reason, min_order=_money(result.min_order) or "") if result.reason else None,
        "coupon": None if row is None else {
            "id": row.id, "pool": row.pool_id, "title": result.pool_title, "title_en": result.pool_title_en,
            "value": _money(row.value), "min_order": _money(result.min_order), "status": row.status,
            "customer_id": row.customer_id, "issued_at": _time(row.issued_at),
            "expires_at": _time(row.expires_at),
            "redeemed_at": _time(row.redeemed_at),
            "redeemed_order": row.redeemed_order, "redeemed_store": row.redeemed_store,
        },
    }


@bp.get("/<code>")
def check(code: str) -> Any:
    user = _user()
    args, errors = request.args, []
    customer_raw = args.get("customer_id")
    customer_id = None
    if customer_raw:
        if not customer_raw.isdigit() or len(customer_raw) > 18:
            errors.append(_error("customer_id", "type", "`customer_id` must be a customer id, a whole number"))
        else:
            customer_id = int(customer_raw)
    amount = _amount(args.get("order_amount"), "order_amount", errors, required=False)
    if len(code) > 64:
        errors.append(_error("code", "type", "`code` must be at most 64 characters"))
    if errors:
        return api.json_response({"errors": errors}, 422)
    req = RedeemRequest(code=code, order_id=(args.get("order_id") or None), order_amount=amount,
                        customer_id=customer_id, phone=args.get("phone") or None, store=args.get("store") or None,
                        device=args.get("device") or None, actor=user.username)
    result = coupon_service().check(req, now=services().now())
    return api.json_response(check_json(result), 404 if result.reason == "unknown" else 200)


@bp.post("/<code>/void")
def void(code: str) -> Any:
    user = _user()
    body = api._body()
    errors: list[dict[str, str]] = []
    if not isinstance(body, dict):
        return api.json_response({"errors": [_error("", "type", 'send {"order_id": "POS-1"}')]}, 422)
    for key in sorted(set(body) - {"order_id", "cancel", "store", "device"}):
        errors.append(_error(str(key)[:64], "unknown", "unknown key; send order_id, cancel, store, device"))
    order_id = _text(body, "order_id", errors, required=True)
    cancel = body.get("cancel", False)
    if not isinstance(cancel, bool):
        errors.append(_error("cancel", "type", "`cancel` must be true or false"))
    store, device = _text(body, "store", errors, size=64), _text(body, "device", errors)
    if errors or len(code) > 64:
        return api.json_response({"errors": errors or [_error("code", "type", "`code` is at most 64 characters")]},
                                 422)
    assert order_id is not None
    result = coupon_service().void(code, order_id=order_id, now=services().now(), cancel=bool(cancel),
                                   actor=user.username, store=store, device=device)
    out = {"status": result.status, "code": result.code, "coupon_status": result.coupon_status}
    if result.status == "unknown":
        raise api.ApiError(404, f"no coupon `{result.code}`", "unknown")
    if result.status == "other_order":
        raise api.ApiError(409, f"coupon `{result.code}` was redeemed by another order", "other_order")
    if result.status == "not_redeemed":
        raise api.ApiError(409, f"coupon `{result.code}` is not redeemed", "not_redeemed")
    return api.json_response(out)


__all__ = ["COUPON_ROLES", "bp", "check_json", "coupon_service", "result_json"]
