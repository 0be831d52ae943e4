"""The till page (门店核销): store staff redeem a customer's coupon on a phone.

Find the customer by phone (full, or the last four digits plus the name), see
their coupons with whether each is usable now, redeem one with the order
amount, and read why a code is refused (zh/en). Every redemption goes through
:mod:`engine.coupons` like the API; the form carries a one-time order number
so a double tap or a reload redeems once (the service is idempotent on the order).

Who: staff and store managers (admins too). CSRF like every page form.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from flask import Blueprint, abort, g, render_template, request

from engine.coupons import RedeemRequest

from . import services
from .api_coupons import coupon_service
from .auth import login_required
from .i18n import get_locale, t
from .i18n_coupons import reason_texts
from .messages import mask

bp = Blueprint("till", __name__)

#: Roles that work the till (admin always may).
TILL_ROLES = ("staff", "store_manager")
_LAST4 = re.compile(r"^[0-9]{4}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _allowed() -> Any:
    user = g.get("user")
    if user is None or not user.has_any(TILL_ROLES):
        abort(403)
    return user


def _arg(source: Any, name: str, limit: int) -> str:
    return _CONTROL.sub("", source.get(name, "") or "")[:limit].strip()


def _stores() -> list[tuple[str, str]]:
    """The stores the shipped redemption form lists (value, label), if published."""
    form = services().registry.current().forms.get("store_redemption")
    field = next((f for f in (form.fields if form is not None else ()) if f.key == "store"), None)
    out = []
    for opt in getattr(field, "options", None) or ():
        text = (getattr(opt, "label_en", None) if get_locale() == "en" else None) or getattr(opt, "label", None)
        out.append((opt.value, text or opt.value))
    return out


def _customer_view(customer_id: int) -> dict[str, Any] | None:
    hit = coupon_service().customer(customer_id)
    return None if hit is None else {"id": hit.id, "name": hit.name, "phone": mask(hit.phone)}


def _find(*, phone: str, name: str) -> list[dict[str, Any]]:
    """Customers by the full phone, or by its last four digits and (part of) the name."""
    svc = coupon_service()
    found = (svc.find_customers(last4=phone, name=name) if name else []) if _LAST4.match(phone) \
        else svc.find_customers(phone=phone)
    return [{"id": h.id, "name": h.name, "phone": mask(h.phone)} for h in found]


def _render(**ctx: Any) -> Any:
    user = g.get("user")
    customer = ctx.get("customer")
    wallet = []
    if customer is not None:
        for c in coupon_service().wallet(customer["id"], now=services().now()):
            row = c.coupon
            wallet.append({
                "code": c.code, "usable": c.valid, "status": row.status if row else None,
                "value": f"{row.value:.2f}" if row else "", "title": (c.pool_title_en if get_locale() == "en"
                                                                    and c.pool_title_en else c.pool_title) or "",
                "min_order": f"{c.min_order:.2f}" if c.min_order is not None else None,
                "expires_at": row.expires_at if row else None,
                "why": _reason(c.reason, c.min_order) if c.reason else None,
            })
    ctx.setdefault("order_id", f"till-{uuid.uuid4().hex[:16]}")
    return render_template("till.html", wallet=wallet, stores=_stores(), store=ctx.pop("store", None) or
                           request.values.get("store", ""), user=user, **ctx)


def _reason(reason: str, min_order: Decimal | None) -> str:
    texts = reason_texts(reason, min_order=f"{min_order:.2f}" if min_order is not None else "")
    return texts["en" if get_locale() == "en" else "zh"]


@bp.route("/till")
@login_required
def index() -> Any:
    _allowed()
    phone, name = _arg(request.args, "phone", 32), _arg(request.args, "name", 64)
    cid = request.args.get("customer", "")
    if cid.isdigit() and len(cid) < 12:
        customer = _customer_view(int(cid))
        if customer is None:
            abort(404)
        return _render(customer=customer)
    if not phone:
        return _render(customer=None, hits=None, phone="", name="")
    if _LAST4.match(phone) and not name:
        return _render(customer=None, hits=None, phone=phone, name=name, problem=t("till_need_phone"))
    hits = _find(phone=phone, name=name)
    if len(hits) == 1:
        return _render(customer=hits[0], phone=phone, name=name)
    return _render(customer=None, hits=hits, phone=phone, name=name)


@bp.route("/till/redeem", methods=["POST"])
@login_required
def redeem() -> Any:
    user = _allowed()
    form = request.form
    cid = form.get("customer", "")
    if not cid.isdigit() or len(cid) > 11:
        abort(400)
    customer = _customer_view(int(cid))
    if customer is None:
        abort(404)
    code, order_id = _arg(form, "code", 64), _arg(form, "order_id", 128)
    store = _arg(form, "store", 64) or None
    problems = {}
    try:
        entered = Decimal(_arg(form, "amount", 20))
        if not entered.is_finite() or entered < 0:
            raise InvalidOperation
        amount: Decimal | None = entered.quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        amount = None
        problems["amount"] = t("till_bad_amount")
    if not code:
        problems["code"] = t("till_bad_code")
    if not order_id:
        order_id = f"till-{uuid.uuid4().hex[:16]}"
    if problems:
        return _render(customer=customer, problems=problems, code=code, amount=_arg(form, "amount", 20),
                       order_id=order_id, store=store), 422
    result = coupon_service().redeem(RedeemRequest(code=code, order_id=order_id, order_amount=amount,
                                                   customer_id=customer["id"], store=store,
                                                   device=f"web-till:{user.username}", actor=user.username),
                                     now=services().now())
    if result.ok:
        return _render(customer=customer, redeemed={"code": result.code, "value": f"{result.value:.2f}",
                                                    "replayed": result.replayed}, store=store)
    return _render(customer=customer, refused={"code": result.code, "reason": result.reason,
                                               "text": _reason(result.reason or "unknown", result.min_order)},
                   code=code, amount=_arg(form, "amount", 20), store=store), 422


__all__ = ["TILL_ROLES", "bp"]
