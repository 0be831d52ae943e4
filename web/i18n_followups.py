"""Chinese and English for follow-up tasks that rules create (web/followups.py):
statuses, the done form, the inbox section and the customer page panel;
merged into :data:`web.i18n.CATALOG`. Outcome labels come from the rule step
(``outcomes``: label / label_en) or the defaults in engine.definitions.specs."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "fu_title": ("跟进任务", "Follow-up tasks"),
    "fu_task": ("跟进任务 #{id}", "Follow-up task #{id}"),
    "fu_status_open": ("待处理", "Open"),
    "fu_status_done": ("已完成", "Done"),
    "fu_status_cancelled": ("已由他人完成", "Done by someone else"),
    "fu_customer": ("客户", "Customer"),
    "fu_assignee": ("负责人", "Assignee"),
    "fu_rule": ("来自规则", "From rule"),
    "fu_created": ("创建时间", "Created"),
    "fu_due": ("截止", "Due"),
    "fu_done_at": ("完成时间", "Done at"),
    "fu_outcome": ("结果", "Outcome"),
    "fu_comment": ("备注", "Comment"),
    "fu_response": ("响应时长", "Response time"),
    "fu_reminders": ("已催办 {n} 次", "Reminded {n} times"),
    "fu_escalated": ("已升级", "Escalated"),
    "fu_origin_escalation": ("升级转来", "Escalated to you"),
    "fu_done_button": ("完成任务", "Mark done"),
    "fu_choose_outcome": ("请选择结果", "Choose an outcome"),
    "fu_done_flash": ("任务已完成：{outcome}", "Task done: {outcome}"),
    "fu_closed": ("该任务已{status}，无需再处理。", "This task is already {status}; nothing to do."),
    "fu_none": ("暂无跟进任务", "No follow-up tasks"),
    "fu_not_assigned": ("这不是您的任务", "This task is not assigned to you"),
    "fu_bad_outcome": ("请选择一个结果", "Choose an outcome"),
    "fu_bad_comment": ("备注最多 {n} 个字", "The comment may have at most {n} characters"),
    "fu_stale": ("任务刚被修改，请刷新后重试", "The task changed meanwhile; reload and try again"),
    "fu_duration_days": ("{d}天{h}小时", "{d} d {h} h"),
    "fu_duration_hours": ("{h}小时{m}分", "{h} h {m} min"),
    "fu_duration_minutes": ("{m}分钟", "{m} min"),
}
