"""Coupons at the till (核销): the pure redemption decision
(:mod:`engine.coupons.decision`) and the service every door uses
(:mod:`engine.coupons.redeem`: the API, the till page, the redemption form and
orders that arrive with a coupon code)."""

from engine.coupons.decision import REASONS, Facts, RedeemRequest, normalize_code, normalize_phone, refusal
from engine.coupons.redeem import (
    CheckResult,
    CouponService,
    RedeemResult,
    VoidResult,
    check,
    redeem,
    void,
)

__all__ = ["REASONS", "CheckResult", "CouponService", "Facts", "RedeemRequest", "RedeemResult", "VoidResult",
           "check", "normalize_code", "normalize_phone", "redeem", "refusal", "void"]
