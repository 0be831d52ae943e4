"""Chinese and English for coupon redemption (the till page and the coupons
API); merged into :data:`web.i18n.CATALOG`. The API answers with both texts of
a refusal (``message: {zh, en}``), the pages with the reader's language."""

from __future__ import annotations

from engine.coupons.decision import REASONS
from engine.forms.errors import MESSAGES as FORM_MESSAGES

#: Why a redemption is refused, by reason code (``engine.coupons.decision.REASONS``): the
#: texts live with the form errors (``coupon_<reason>``), so a refusal reads the same on
#: the till, in the API and as a form field error.
REASON_TEXTS: dict[str, tuple[str, str]] = {
    reason: FORM_MESSAGES[f"coupon_{reason}"] for reason in REASONS
}

MESSAGES: dict[str, tuple[str, str]] = {
    "till_nav": ("核销", "Till"),
    "till_title": ("门店核销", "Redeem at the till"),
    "till_find": ("查找顾客", "Find the customer"),
    "till_phone": ("手机号（完整，或后 4 位加姓名）", "Phone (full, or the last 4 digits with the name)"),
    "till_name": ("姓名", "Name"),
    "till_search": ("查找", "Find"),
    "till_none_found": ("没有找到顾客", "No customer found"),
    "till_need_phone": ("请输入完整手机号，或后 4 位加姓名", "Enter the full phone, or its last 4 digits and the name"),
    "till_coupons": ("可用优惠券", "Usable coupons"),
    "till_no_coupons": ("该顾客没有可用的优惠券", "This customer has no usable coupon"),
    "till_unusable": ("不可用", "Not usable"),
    "till_code": ("券码", "Coupon code"),
    "till_amount": ("订单金额（元）", "Order amount (CNY)"),
    "till_order": ("订单号（可不填）", "Order number (optional)"),
    "till_store": ("门店", "Store"),
    "till_redeem": ("核销", "Redeem"),
    "till_redeemed": ("核销成功：{code}，抵扣 {value} 元", "Redeemed: {code}, {value} off"),
    "till_refused": ("不能核销：{reason}", "Not redeemed: {reason}"),
    "till_value": ("面额 {value} 元", "{value} off"),
    "till_min_order": ("满 {min_order} 元可用", "on orders from {min_order}"),
    "till_expires": ("有效期至 {at}", "valid until {at}"),
    "till_bad_amount": ("请输入订单金额", "Enter the order amount"),
    "till_bad_code": ("请输入券码", "Enter the coupon code"),
    "till_other_customer": ("换一位顾客", "Another customer"),
}


def reason_texts(reason: str, **params: object) -> dict[str, str]:
    """Both languages of a refusal reason, filled with ``params`` (``min_order``)."""
    zh, en = REASON_TEXTS.get(reason, (reason, reason))
    return {"zh": zh.format(**params) if params else zh, "en": en.format(**params) if params else en}


__all__ = ["MESSAGES", "REASON_TEXTS", "reason_texts"]
