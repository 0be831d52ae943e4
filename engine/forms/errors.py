"""Field-level validation errors: a code plus context, rendered in Chinese or English.

As in pydantic, an error is data (``field``, ``code``, ``ctx``) and its message
is chosen by code and filled from ctx at the edge, so one error reads well in
either language. ``field`` is a path: ``budget``, ``materials[0].qty``; the
empty string means the payload as a whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

#: code → (Chinese, English) message templates, filled with ``ctx`` via str.format.
MESSAGES: Mapping[str, tuple[str, str]] = MappingProxyType({
    "required": ("必填", "This field is required"),
    "unknown_field": ("未知字段", "Unknown field"),
    "readonly": ("该字段为只读，不能修改", "This field is read-only"),
    "object_type": ("应为对象", "Expected an object"),
    "string_type": ("应为文本", "Expected text"),
    "invalid_chars": ("包含不允许的字符", "Contains characters that are not allowed"),
    "too_short": ("至少 {min_length} 个字符", "Must be at least {min_length} characters"),
    "too_long": ("最多 {max_length} 个字符", "Must be at most {max_length} characters"),
    "pattern": ("格式不正确", "Does not match the required format"),
    "integer_type": ("应为整数", "Expected a whole number"),
    "number_type": ("应为数字", "Expected a number"),
    "money_type": ("应为金额，如 12.50", "Expected an amount such as 12.50"),
    "decimal_places": ("最多 {places} 位小数", "At most {places} decimal places"),
    "out_of_range": ("数值超出允许范围", "The number is out of the allowed range"),
    "min": ("不能小于 {min}", "Must be at least {min}"),
    "max": ("不能大于 {max}", "Must be at most {max}"),
    "date_type": ("应为日期 (YYYY-MM-DD)", "Expected a date (YYYY-MM-DD)"),
    "datetime_type": ("应为日期时间 (YYYY-MM-DDTHH:MM)", "Expected a date and time (YYYY-MM-DDTHH:MM)"),
    "bool_type": ("应为是或否", "Expected true or false"),
    "list_type": ("应为列表", "Expected a list"),
    "option": ("不是有效的选项", "Not one of the allowed options"),
    "too_many_items": ("最多 {max_items} 项", "At most {max_items} items"),
    "phone": ("手机号格式不正确", "Not a valid phone number"),
    "email": ("邮箱格式不正确", "Not a valid email address"),
    "url": ("网址格式不正确（需以 http:// 或 https:// 开头）", "Not a valid URL (http:// or https:// only)"),
    "customer": ("应为顾客编号", "Expected a customer id"),
    "customer_not_found": ("顾客不存在", "No such customer"),
    "no_customer_with_phone": ("没有使用这个手机号的顾客", "No customer has this phone number"),
    "user": ("应为用户名", "Expected a user name"),
    "user_not_found": ("用户不存在", "No such user"),
    "file": ("文件引用无效", "Not a valid file reference"),
    "file_type": ("不支持的文件类型，允许：{accept}", "File type not allowed; allowed: {accept}"),
    "file_size": ("文件过大，最大 {max_size}", "File too large; the limit is {max_size}"),
    "min_rows": ("至少 {min_rows} 行", "At least {min_rows} rows"),
    "max_rows": ("最多 {max_rows} 行", "At most {max_rows} rows"),
    "after": ("必须晚于「{other_label}」", "Must be after {other_label_en}"),
    "before": ("必须早于「{other_label}」", "Must be before {other_label_en}"),
    "unique": ("该值已被其他记录使用", "This value is already used by another record"),
    # a coupon a form (or the till, or the API) could not redeem: engine.coupons.decision.REASONS
    "coupon_unknown": ("券码不存在，请核对后重试", "No coupon has this code; check it and try again"),
    "coupon_not_yours": ("该券不属于此顾客", "This coupon belongs to another customer"),
    "coupon_expired": ("该券已过期", "This coupon has expired"),
    "coupon_not_yet_valid": ("该券尚未到可用时间", "This coupon is not valid yet"),
    "coupon_already_redeemed": ("该券已核销，不能重复使用", "This coupon was already redeemed"),
    "coupon_voided": ("该券已作废", "This coupon was cancelled"),
    "coupon_below_min_order": ("订单金额未达到最低消费 {min_order} 元", "The order is below the minimum of {min_order}"),
    "coupon_limit_per_customer": ("该顾客使用本类券已达上限", "This customer has reached the limit for this coupon"),
    "coupon_limit_per_phone": ("该手机号使用本类券已达上限", "This phone number has reached the limit for this coupon"),
    "coupon_velocity": ("本门店或设备一小时内核销过多，请稍后再试",
                 "Too many redemptions at this store or device in the last hour; try again later"),
    "coupon_blacklisted": ("该手机号或设备不能使用本券", "This phone or device may not redeem this coupon"),
    "coupon_not_new_customer": ("本券仅限新顾客（首单）使用", "This coupon is for new customers (a first order) only"),
    "insufficient_points": ("积分不足，当前可用 {balance} 分", "Not enough points: {balance} available"),
    "coupon_not_stackable": ("本券不能与同一订单的其他优惠券叠加", "This coupon cannot be combined with another on the same order"),
})


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``field`` path, ``code`` (a key of MESSAGES), ``ctx``."""

    field: str
    code: str
    ctx: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def message(self, locale: str = "zh") -> str:
        """The message in ``locale`` ("zh" or "en"; anything else reads as "en" unless it
        starts with "zh"). A pattern error uses the form's ``pattern_message`` if given."""
        zh = str(locale).lower().startswith("zh")
        if self.code == "pattern" and self.ctx.get("pattern_message"):
            return str(self.ctx["pattern_message"])
        templates = MESSAGES.get(self.code)
        if templates is None:
            return self.code
        template = templates[0 if zh else 1]
        try:
            return template.format_map(_Defaulting(self.ctx))
        except (ValueError, IndexError):  # a malformed ctx never hides the error itself
            return template

    def to_json(self, locale: str = "zh") -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message(locale)}


class _Defaulting(dict):  # type: ignore[type-arg]
    def __init__(self, ctx: Mapping[str, Any]):
        super().__init__(ctx)
        if "other_label_en" not in self and "other_label" in self:
            self["other_label_en"] = self["other_label"]

    def __missing__(self, key: str) -> str:
        return "?"


class ValidationFailed(Exception):
    """A submission was refused; ``errors`` holds every field error found."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(f"{e.field or '<payload>'}: {e.code}" for e in self.errors))


def to_json(errors: Iterable[FieldError], locale: str = "zh") -> list[dict[str, str]]:
    """Errors as ``[{"field", "code", "message"}]`` for a 422 response."""
    return [e.to_json(locale) for e in errors]


__all__ = ["MESSAGES", "FieldError", "ValidationFailed", "to_json"]
