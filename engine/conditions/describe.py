"""Conditions in words, Chinese or English, for the pages that show them to people
(the rules page shows each rule's audience this way).

Words, not YAML: ``近90天订单数 ≥ 2 且 标签包含 vip`` / ``orders in the last 90
days: count ≥ 2 and tags contain vip``. Field names are the customer field
labels where known, else the key as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from .ast import All, Any, Compare, Condition, Not, OrderWindow, SegmentRef
from .order_windows import describe_order_window

__all__ = ["describe_condition"]

#: Customer fields as people call them: (zh, en).
FIELD_LABELS: Mapping[str, tuple[str, str]] = {
    "name": ("姓名", "name"), "phone": ("手机", "phone"), "email": ("邮箱", "e-mail"), "gender": ("性别", "gender"),
    "city": ("城市", "city"), "level": ("会员等级", "level"), "birthday": ("生日", "birthday"),
    "contract_end": ("合同到期", "contract end"), "registered_at": ("注册时间", "registered"),
    "last_purchase_at": ("最近购买", "last purchase"), "order_count": ("累计订单数", "lifetime orders"),
    "total_spent": ("累计消费", "total spent"), "rfm_recency_days": ("距上次购买天数", "days since purchase"),
    "rfm_r": ("R 分", "R score"), "rfm_f": ("F 分", "F score"), "rfm_m": ("M 分", "M score"),
    "rfm_segment": ("RFM 分群", "RFM segment"), "account_manager_id": ("客户经理", "account manager"),
    "tags": ("标签", "tags"), "consent.sms": ("短信同意", "SMS consent"),
    "consent.email": ("邮件同意", "e-mail consent"), "consent.wecom": ("企业微信同意", "WeCom consent"),
    "coupon_redeemed": ("已核销券", "coupon redeemed"), "coupon_issued": ("已发券", "coupon issued"),
    "message_replied": ("已回复", "replied"), "message_clicked": ("已点击", "clicked"),
    "ordered_since_entry": ("进入后下单", "ordered since entry"), "feedback.score": ("评分", "score"),
    "points": ("积分余额", "points balance"), "points_expire_on": ("积分到期日", "points expire on"),
    "tier": ("会员等级（自动）", "tier"),
}
_SIGNS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
_WORDS: Mapping[str, tuple[str, str]] = {
    "in": ("属于", "in"), "not_in": ("不属于", "not in"), "between": ("介于", "between"),
    "contains": ("包含", "contain"), "not_contains": ("不包含", "do not contain"),
}


def describe_condition(cond: Condition, locale: str = "zh", *,
                       segment_titles: Mapping[str, str] | None = None) -> str:
    """``cond`` in words; ``segment_titles`` names segments by their titles."""
    zh = locale.startswith("zh")
    return _describe(cond, zh, segment_titles or {}, top=True)


def _describe(node: Condition, zh: bool, titles: Mapping[str, str], top: bool = False) -> str:
    if isinstance(node, OrderWindow):
        return describe_order_window(node, "zh" if zh else "en")
    if isinstance(node, SegmentRef):
        title = titles.get(node.segment_id, node.segment_id)
        return f"属于客群「{title}」" if zh else f"in segment “{title}”"
    if isinstance(node, Not):
        inner = _describe(node.item, zh, titles)
        return f"非（{inner}）" if zh else f"not ({inner})"
    if isinstance(node, (All, Any)):
        joiner = (" 且 " if zh else " and ") if isinstance(node, All) else (" 或 " if zh else " or ")
        parts = [_describe(i, zh, titles) for i in node.items]
        text = joiner.join(parts)
        return text if top or len(parts) < 2 else (f"（{text}）" if zh else f"({text})")
    if isinstance(node, Compare):
        return _compare(node, zh)
    return str(node)  # pragma: no cover - every node kind is handled above


def _compare(node: Compare, zh: bool) -> str:
    zh_label, en_label = FIELD_LABELS.get(node.field, (node.field, node.field))
    field = zh_label if zh else en_label
    op, value = node.op, node.value
    if op == "is_empty":
        empty = bool(value)
        return f"{field}{'为空' if empty else '不为空'}" if zh else f"{field} {'is empty' if empty else 'is set'}"
    if op in ("older_than", "within", "within_next") and isinstance(value, timedelta):
        span = _span(value, zh)
        if op == "older_than":
            return f"{field}早于{span}前" if zh else f"{field} more than {span} ago"
        if op == "within":
            return f"{field}在近{span}内" if zh else f"{field} within the last {span}"
        return f"{field}在未来{span}内" if zh else f"{field} within the next {span}"
    if isinstance(value, tuple):
        shown = ("、" if zh else ", ").join(_show(v, zh) for v in value)
        if op == "between" and len(value) == 2:
            low, high = _show(value[0], zh), _show(value[1], zh)
            shown = f"{low}–{high}" if zh else f"{low} and {high}"
    else:
        shown = _show(value, zh)
    if op in _SIGNS:
        return f"{field} {_SIGNS[op]} {shown}"
    zh_word, en_word = _WORDS.get(op, (op, op))
    return f"{field}{zh_word} {shown}" if zh else f"{field} {en_word} {shown}"


def _show(value: object, zh: bool = True) -> str:
    if isinstance(value, bool):
        return ("是" if value else "否") if zh else ("yes" if value else "no")
    return str(value)


def _span(delta: timedelta, zh: bool) -> str:
    days = delta / timedelta(days=1)
    if days == int(days):
        return f"{int(days)}天" if zh else f"{int(days)} days"
    hours = delta / timedelta(hours=1)
    return f"{hours:g}小时" if zh else f"{hours:g} hours"
