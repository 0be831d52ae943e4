"""Chinese and English for loyalty on the customer page (积分, 会员等级); merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "pts_title": ("积分", "Points"),
    "pts_balance": ("可用积分", "Points available"),
    "pts_tier": ("会员等级", "Membership tier"),
    "pts_no_tier": ("未达到任何等级", "No tier yet"),
    "pts_next_expiry": ("最近到期", "Next to lapse"),
    "pts_expiring": ("{points} 分将于 {day} 到期", "{points} points lapse on {day}"),
    "pts_none_expiring": ("无", "None"),
    "pts_history": ("积分明细", "Points history"),
    "pts_when": ("时间", "When"),
    "pts_kind": ("类型", "Kind"),
    "pts_points": ("积分", "Points"),
    "pts_left": ("剩余", "Left"),
    "pts_expires_on": ("到期日", "Lapses on"),
    "pts_reason": ("说明", "Details"),
    "pts_source": ("来源", "Source"),
    "pts_kind_earn": ("获得", "Earned"),
    "pts_kind_spend": ("使用", "Spent"),
    "pts_kind_expire": ("过期", "Lapsed"),
    "pts_kind_adjust": ("调整", "Adjusted"),
    "pts_kind_reverse": ("退款扣回", "Taken back (refund)"),
    "pts_source_order": ("订单", "Order"),
    "pts_source_rule": ("自动化规则", "Automation rule"),
    "pts_source_api": ("接口", "API"),
    "pts_source_expiry": ("有效期到期", "Validity ended"),
    "pts_page": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
}
