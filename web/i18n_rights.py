"""Chinese and English for customer rights (export, erasure) and the audit
page (web/rights.py); merged into :data:`web.i18n.CATALOG`.

Every action the product audits has a label here (``audit_action_<action>``
with dots as underscores); :data:`AUDIT_ACTIONS` lists them for the page's
filter, and a test checks that every action written in the code has one.
"""

from __future__ import annotations

#: Audited actions, in the order the filter lists them: (action, zh, en).
_ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("login", "登录", "Signed in"),
    ("login_failed", "登录失败", "Sign-in failed"),
    ("login_locked", "登录被锁定", "Sign-in locked"),
    ("logout", "退出登录", "Signed out"),
    ("token_locked", "令牌尝试被锁定", "Token attempts locked"),
    ("password_changed", "修改密码", "Password changed"),
    ("password_set", "设置密码", "Password set"),
    ("password_reset", "重置密码", "Password reset"),
    ("user.created", "创建用户", "User created"),
    ("user.roles_changed", "角色变更", "Roles changed"),
    ("user.manager_changed", "上级变更", "Manager changed"),
    ("user.store_changed", "门店变更", "Store changed"),
    ("user.deactivated", "停用用户", "User deactivated"),
    ("user.activated", "启用用户", "User activated"),
    ("token.created", "创建 API 令牌", "API token created"),
    ("token.revoked", "吊销 API 令牌", "API token revoked"),
    ("definitions.published", "发布定义", "Definitions published"),
    ("records.exported", "导出记录 CSV", "Records exported (CSV)"),
    ("customer.exported", "导出客户数据", "Customer data exported"),
    ("customer.erased", "删除客户个人信息", "Customer erased"),
    ("customer.merged", "合并客户", "Customers merged"),
    ("personal_data.unmasked", "查看完整个人信息", "Full personal data viewed"),
    ("record.created", "提交记录", "Record submitted"),
    ("record.updated", "修改记录", "Record changed"),
    ("workflow.start", "发起审批", "Approval started"),
    ("workflow.act", "审批操作", "Approval action"),
    ("workflow.resubmit", "重新提交审批", "Approval resubmitted"),
    ("workflow.withdraw", "撤回审批", "Approval withdrawn"),
    ("workflow.tick", "审批定时处理（提醒、超时）", "Approval timer (reminder, timeout)"),
    ("message.resend", "重发消息", "Message resent"),
    ("task.done", "完成跟进任务", "Follow-up done"),
    ("task.remind", "跟进任务提醒", "Follow-up reminder"),
    ("task.escalate", "跟进任务升级", "Follow-up escalated"),
)

AUDIT_ACTIONS: tuple[str, ...] = tuple(a for a, _, _ in _ACTIONS)

MESSAGES: dict[str, tuple[str, str]] = {
    "audit_nav": ("审计日志", "Audit log"),
    "audit_title": ("审计日志", "Audit log"),
    "audit_actor": ("操作人", "Actor"),
    "audit_action": ("操作", "Action"),
    "audit_target": ("对象", "Target"),
    "audit_target_hint": ("类型或 类型:编号，例如 customer:12", "type or type:id, e.g. customer:12"),
    "audit_from": ("从", "From"),
    "audit_to": ("到", "To"),
    "audit_at": ("时间", "Time"),
    "audit_detail": ("详情", "Detail"),
    "audit_any": ("全部", "Any"),
    "audit_filter": ("筛选", "Filter"),
    "audit_total": ("共 {n} 条", "{n} entries"),
    "audit_none": ("没有符合条件的记录", "No entries match"),
    "audit_page": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "audit_prev": ("上一页", "Previous"),
    "audit_next": ("下一页", "Next"),
    "audit_bad_filter": ("筛选条件“{field}”无效，已显示全部记录", "The filter “{field}” is not valid; showing all entries"),
    "audit_field_actor": ("操作人", "Actor"),
    "audit_field_action": ("操作", "Action"),
    "audit_field_target": ("对象", "Target"),
    "audit_field_from": ("开始日期", "From date"),
    "audit_field_to": ("结束日期", "To date"),
    "audit_field_page": ("页码", "Page"),
    "audit_field_per_page": ("每页条数", "Per page"),
    "audit_times": ("时间为业务时区（{tz}）", "Times in the business time zone ({tz})"),
    "rights_title": ("个人信息权利", "Personal data rights"),
    "rights_hint": ("导出该客户的全部数据（ZIP：JSON 与 CSV），或删除其个人信息。删除后订单与汇总保留但不再关联身份，"
                    "撤回同意的记录保留为凭证，任何规则都不会再选中该客户。此操作不可撤销。",
                    "Export everything held about this customer (a zip of JSON and CSV), or erase their personal "
                    "data. Orders and totals stay without identity, consent withdrawals stay as proof, and no rule "
                    "enters the customer again. Erasing cannot be undone."),
    "rights_export": ("导出数据", "Export data"),
    "rights_erase": ("删除个人信息", "Erase personal data"),
    "rights_confirm": ("输入客户编号 {id} 以确认删除", "Type the customer id {id} to confirm"),
    "rights_need_confirm": ("请输入客户编号 {id} 以确认删除", "Type the customer id {id} to confirm the erasure"),
    "rights_erased": ("客户 {id} 的个人信息已删除", "Customer {id} was erased"),
    "rights_already": ("客户 {id} 已于之前删除", "Customer {id} had already been erased"),
    "rights_erased_badge": ("已删除个人信息", "Erased"),
    "pii_show_full": ("显示完整手机与邮箱（将记入审计日志）", "Show full phone and e-mail (recorded in the audit log)"),
    "pii_masked_hint": ("手机与邮箱已遮挡", "Phone and e-mail are masked"),
    "pii_no_permission": ("您没有查看完整个人信息的权限", "You may not view full personal data"),
    **{"audit_action_" + a.replace(".", "_"): (zh, en) for a, zh, en in _ACTIONS},
}
