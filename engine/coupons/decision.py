"""Which reason, if any, refuses a redemption: a pure function of the coupon,
its pool's redemption rules, the request and counts the caller read. No I/O,
no clock: ``now`` comes in, so every rule is testable on plain data.

The order of the checks is the order a till clerk can act on: first whether
the code exists and is this customer's, then its state and time window, then
the order (minimum amount, new customer), then the limits and abuse guards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.customers_import import normalize_phone as import_phone
from engine.definitions.specs import RedemptionRules

#: Every reason a redemption may be refused, in the order they are checked.
REASONS: tuple[str, ...] = (
    "unknown", "blacklisted", "not_yours", "already_redeemed", "voided", "not_yet_valid", "expired",
    "below_min_order", "not_new_customer", "limit_per_customer", "limit_per_phone", "velocity", "not_stackable",
)

_NOT_CODE = re.compile(r"[\s\-]")


def normalize_code(code: str) -> str:
    """A code as a clerk types or scans it (``wb20-kbev 2mstrh``) → as issued (``WB20KBEV2MSTRH``).

    Issued codes are upper-case letters and digits (``engine.automation``); a
    dash or space someone adds for readability is not part of the code."""
    return _NOT_CODE.sub("", code or "").upper()


def normalize_phone(phone: str | None) -> str | None:
    """``+86 138-0000-1234`` → ``13800001234`` as the customer import stores phones
    (:func:`engine.customers_import.normalize_phone`), so limits count one phone
    once; text that is no phone number stays as typed (it then matches nobody)."""
    if not phone or not phone.strip():
        return None
    try:
        return import_phone(phone)
    except ValueError:
        return phone.strip()


@dataclass(frozen=True)
class RedeemRequest:
    """One redemption as a till, the API or an order sends it.

    ``order_id`` makes it idempotent: the same order redeeming the same code
    again gets the first result. ``customer_id`` or ``phone`` says who presents
    the coupon (a coupon issued to someone else is ``not_yours``)."""

    code: str
    order_id: str | None = None
    order_amount: Decimal | None = None
    customer_id: int | None = None
    phone: str | None = None
    store: str | None = None
    device: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class CouponFacts:
    """The coupon as stored (times naive UTC) with its owner's phone."""

    id: int
    code: str
    pool_id: str
    customer_id: int | None
    customer_phone: str | None
    status: str
    value: Decimal
    issued_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    redeemed_order: str | None


@dataclass(frozen=True)
class Facts:
    """Counts the limits need, read by the caller only for rules the pool declares
    (None: not read, the rule is not declared)."""

    customer_redeemed: int | None = None
    phone_redeemed: int | None = None
    store_last_hour: int | None = None
    device_last_hour: int | None = None
    earlier_orders: int | None = None
    #: other coupons already redeemed on this order: does each allow stacking?
    others_on_order: tuple[bool, ...] = ()


def refusal(coupon: CouponFacts | None, rules: RedemptionRules, request: RedeemRequest, facts: Facts, *,
            now_utc: datetime, now_local: datetime, min_order: Decimal | None) -> str | None:
    """The reason code that refuses ``request``, or None when it may be redeemed.

    ``now_utc`` is naive UTC (the coupon's times); ``now_local`` naive in the
    business time zone (the pool's ``valid_from``/``valid_until``). An
    ``order_amount`` of None skips the minimum (a check before the amount is known)."""
    if coupon is None:
        return "unknown"
    phone = normalize_phone(request.phone) or coupon.customer_phone
    if (request.device and request.device in rules.blacklist_devices) or (
            phone and phone in rules.blacklist_phones) or (
            coupon.customer_phone and coupon.customer_phone in rules.blacklist_phones):
        return "blacklisted"
    if coupon.customer_id is not None:
        if request.customer_id is not None and request.customer_id != coupon.customer_id:
            return "not_yours"
        asked = normalize_phone(request.phone)
        if asked is not None and asked != coupon.customer_phone:
            return "not_yours"
    if coupon.status == "redeemed" or coupon.redeemed_at is not None:
        return "already_redeemed"
    if coupon.status != "issued":
        return "voided"
    if rules.valid_from is not None and now_local < rules.valid_from:
        return "not_yet_valid"
    if (coupon.expires_at is not None and now_utc >= coupon.expires_at) or (
            rules.valid_until is not None and now_local >= rules.valid_until):
        return "expired"
    if min_order is not None and request.order_amount is not None and request.order_amount < min_order:
        return "below_min_order"
    if rules.new_customers_only and (facts.earlier_orders or 0) > 0:
        return "not_new_customer"
    if rules.per_customer is not None and (facts.customer_redeemed or 0) >= rules.per_customer:
        return "limit_per_customer"
    if rules.per_phone is not None and (facts.phone_redeemed or 0) >= rules.per_phone:
        return "limit_per_phone"
    if (rules.per_store_per_hour is not None and (facts.store_last_hour or 0) >= rules.per_store_per_hour) or (
            rules.per_device_per_hour is not None and (facts.device_last_hour or 0) >= rules.per_device_per_hour):
        return "velocity"
    if facts.others_on_order and (not rules.stackable or not all(facts.others_on_order)):
        return "not_stackable"
    return None


__all__ = ["REASONS", "CouponFacts", "Facts", "RedeemRequest", "normalize_code", "normalize_phone", "refusal"]
