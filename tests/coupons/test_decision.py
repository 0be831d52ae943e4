"""The pure redemption decision: each reason on plain data, and which one wins
when several apply (the order a clerk can act on)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from engine.coupons.decision import REASONS, CouponFacts, Facts, RedeemRequest, normalize_code, normalize_phone, refusal
from engine.definitions.specs import RedemptionRules

NOW = datetime(2026, 10, 2, 6, 0)  # naive UTC
LOCAL = datetime(2026, 10, 2, 14, 0)  # the same moment in Shanghai
COUPON = CouponFacts(id=1, code="WB20KBEV2MSTRH", pool_id="winback20", customer_id=7, customer_phone="13800001234",
                     status="issued", value=Decimal(20), issued_at=NOW - timedelta(days=1),
                     expires_at=NOW + timedelta(days=13), redeemed_at=None, redeemed_order=None)
REQUEST = RedeemRequest(code="WB20KBEV2MSTRH", order_id="POS-1", order_amount=Decimal(120), customer_id=7,
                        store="sh", device="till-1")
ALL = RedemptionRules(valid_from=datetime(2026, 10, 1), valid_until=datetime(2026, 10, 8), per_customer=1,
                      per_phone=1, per_store_per_hour=10, per_device_per_hour=5, new_customers_only=True,
                      stackable=False, blacklist_phones=frozenset({"13900009999"}),
                      blacklist_devices=frozenset({"till-x"}))


NO_FACTS = Facts()


def decide(coupon=COUPON, rules=ALL, request=REQUEST, facts=NO_FACTS, now=NOW, local=LOCAL,
           min_order=Decimal(99)) -> str | None:
    return refusal(coupon, rules, request, facts, now_utc=now, now_local=local, min_order=min_order)


def test_a_good_redemption_passes() -> None:
    assert decide(facts=Facts(0, 0, 9, 4, 0, ())) is None
    assert decide(rules=RedemptionRules(), min_order=None) is None


@pytest.mark.parametrize("reason, kwargs", [
    ("unknown", {"coupon": None}),
    ("blacklisted", {"request": replace(REQUEST, device="till-x")}),
    ("blacklisted", {"coupon": replace(COUPON, customer_phone="13900009999"), "request": replace(REQUEST, customer_id=7)}),
    ("not_yours", {"request": replace(REQUEST, customer_id=8)}),
    ("not_yours", {"request": replace(REQUEST, customer_id=None, phone="13800005678")}),
    ("already_redeemed", {"coupon": replace(COUPON, status="redeemed", redeemed_at=NOW)}),
    ("voided", {"coupon": replace(COUPON, status="void")}),
    ("not_yet_valid", {"local": datetime(2026, 9, 30, 23, 59)}),
    ("expired", {"now": NOW + timedelta(days=13)}),
    ("expired", {"local": datetime(2026, 10, 8)}),
    ("below_min_order", {"request": replace(REQUEST, order_amount=Decimal("98.99"))}),
    ("not_new_customer", {"facts": Facts(earlier_orders=1)}),
    ("limit_per_customer", {"facts": Facts(customer_redeemed=1)}),
    ("limit_per_phone", {"facts": Facts(phone_redeemed=1)}),
    ("velocity", {"facts": Facts(store_last_hour=10)}),
    ("velocity", {"facts": Facts(device_last_hour=5)}),
    ("not_stackable", {"facts": Facts(others_on_order=(True,))}),
])
def test_each_reason(reason: str, kwargs: dict) -> None:
    assert decide(**kwargs) == reason
    assert reason in REASONS


def test_stacking_needs_both_sides_to_allow_it() -> None:
    open_rules = replace(ALL, stackable=True)
    assert decide(rules=open_rules, facts=Facts(others_on_order=(True, True))) is None
    assert decide(rules=open_rules, facts=Facts(others_on_order=(True, False))) == "not_stackable"


def test_the_first_applicable_reason_wins() -> None:
    everything = Facts(customer_redeemed=5, phone_redeemed=5, store_last_hour=99, device_last_hour=99,
                       earlier_orders=3, others_on_order=(False,))
    cheap = replace(REQUEST, order_amount=Decimal(1))
    assert decide(request=cheap, facts=everything) == "below_min_order"
    assert decide(facts=everything) == "not_new_customer"
    assert decide(coupon=replace(COUPON, status="redeemed", redeemed_at=NOW), request=replace(REQUEST, customer_id=8)) \
        == "not_yours"
    assert decide(request=replace(cheap, order_amount=None), facts=replace(everything, earlier_orders=0)) \
        == "limit_per_customer"  # no amount known (a check): the minimum is not tested


def test_a_coupon_of_nobody_in_particular_is_anyones() -> None:
    assert decide(coupon=replace(COUPON, customer_id=None, customer_phone=None),
                  request=replace(REQUEST, customer_id=99), rules=RedemptionRules()) is None


def test_normalizing_codes_and_phones() -> None:
    assert normalize_code(" wb20-kbev 2mstrh ") == "WB20KBEV2MSTRH"
    assert normalize_phone("+86 138-0000-1234") == normalize_phone("0086 13800001234") == "13800001234"
    assert normalize_phone("") is None and normalize_phone("abc") == "abc"
