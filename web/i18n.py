"""Chinese and English for the web pages: a small message catalog, no compile step.

The locale of a request is, in order: ``?lang=zh|en`` (remembered in a cookie),
the ``lang`` cookie, the signed-in user's locale, the browser's
Accept-Language, the installation's default (settings). Labels written in the
definitions are shown as written: ``label`` in Chinese, ``label_en`` (falling
back to ``label``) in English.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

LOCALES = ("zh", "en")
COOKIE = "lang"

CATALOG: dict[str, tuple[str, str]] = {
    # rules page (web/rules.py)
    "rules_title": ("自动化规则", "Automation rules"),
    "rules_none": ("尚未发布规则", "No rules are published yet"),
    "rules_disabled": ("已停用", "disabled"),
    "rules_trigger": ("触发", "Trigger"),
    "rules_audience": ("对象", "Audience"),
    "rules_next_run": ("下次运行", "Next run"),
    "rules_no_next_run": ("由事件触发", "when events arrive"),
    "rules_last_runs": ("最近运行", "Last runs"),
    "rules_day": ("日期", "Day"),
    "rules_runs": ("运行次数", "Runs"),
    "rules_entered": ("进入", "Entered"),
    "rules_sent": ("已发送", "Sent"),
    "rules_skipped_consent": ("跳过·未授权", "Skipped: consent"),
    "rules_skipped_cap": ("频次上限", "Frequency caps"),
    "rules_deferred_quiet": ("免打扰顺延", "Quiet hours (deferred)"),
    "rules_no_runs": ("最近 30 天没有运行", "No runs in the last 30 days"),
    "rules_days": ("天数", "Days"),
    "rules_preview": ("预览", "Preview"),
    "rules_preview_note": ("预览在模拟时钟上运行规则，不写入任何数据、不发送任何消息。",
                           "The preview runs the rule on a simulated clock; nothing is written or sent."),
    "rules_audience_n": ("当前受众 {n} 人", "Audience now: {n} customers"),
    "rules_sample": ("受众样例", "Audience sample"),
    "rules_customer": ("客户", "Customer"),
    "rules_phone": ("手机", "Phone"),
    "rules_city": ("城市", "City"),
    "rules_nobody": ("无人符合条件", "Nobody matches"),
    "rules_event_no_forecast": ("此规则由事件触发，事件到达时才运行，无法预测。",
                                "This rule is triggered by events: no forecast until they arrive."),
    "rules_forecast": ("未来 {days} 天预测", "Forecast for the next {days} days"),
    "rules_coupons": ("发券", "Coupons"),
    "rules_sms_cost": ("短信费用 (元)", "SMS cost (CNY)"),
    "rules_total": ("合计 {n} 条消息", "{n} messages in total"),
    "rules_sms_price": ("按每条短信 {price} 元计算", "At {price} CNY per SMS"),
    "app_name": ("promoflow 促销流程", "promoflow"),
    "home": ("首页", "Home"),
    "login": ("登录", "Sign in"),
    "logout": ("退出", "Sign out"),
    "username": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "login_failed": ("用户名或密码错误", "Wrong user name or password"),
    "login_required": ("请先登录", "Please sign in first"),
    "logged_out": ("已退出", "You are signed out"),
    "forms_i_can_fill": ("我可以填写的表单", "Forms I can fill in"),
    "no_forms": ("暂无可填写的表单", "No forms for you yet"),
    "my_recent_records": ("我最近的记录", "My recent records"),
    "no_records": ("暂无记录", "No records"),
    "fill": ("填写", "Fill in"),
    "records": ("记录", "Records"),
    "submit": ("提交", "Submit"),
    "save": ("保存", "Save"),
    "add_row": ("添加一行", "Add row"),
    "remove_row": ("删除", "Remove"),
    "required_mark": ("必填", "required"),
    "fix_errors": ("提交失败，请修改标出的字段", "Not submitted: please fix the marked fields"),
    "submitted": ("已提交，记录编号 {id}", "Submitted: record {id}"),
    "updated": ("已保存", "Saved"),
    "record": ("记录", "Record"),
    "record_n": ("记录 #{id}", "Record #{id}"),
    "created_by": ("提交人", "Submitted by"),
    "created_at": ("提交时间", "Submitted at"),
    "updated_at": ("更新时间", "Updated at"),
    "status": ("状态", "Status"),
    "version": ("版本", "Version"),
    "form_version": ("表单版本", "Form version"),
    "filter": ("筛选", "Filter"),
    "clear": ("清除", "Clear"),
    "sort": ("排序", "Sort"),
    "newest_first": ("最新在前", "Newest first"),
    "oldest_first": ("最早在前", "Oldest first"),
    "condition_json": ("高级条件 (JSON)", "Advanced condition (JSON)"),
    "only_mine": ("只看我的", "Only mine"),
    "export_csv": ("导出 CSV", "Export CSV"),
    "total_n": ("共 {n} 条", "{n} in total"),
    "page_n_of": ("第 {page} / {pages} 页", "Page {page} of {pages}"),
    "prev": ("上一页", "Previous"),
    "next": ("下一页", "Next"),
    "any": ("全部", "Any"),
    "yes": ("是", "Yes"),
    "no": ("否", "No"),
    "choose": ("请选择", "Choose"),
    "forbidden": ("没有权限", "Forbidden"),
    "forbidden_text": ("您没有执行此操作的权限。", "You are not allowed to do this."),
    "not_found": ("未找到", "Not found"),
    "not_found_text": ("页面或记录不存在。", "No such page or record."),
    "bad_request": ("请求无效", "Bad request"),
    "csrf_failed": ("表单已过期或缺少安全令牌，请刷新页面后重试。",
                    "The form expired or lacks its security token; reload the page and try again."),
    "too_large": ("提交的内容过大", "The submission is too large"),
    "conflict": ("记录已被他人修改，请刷新后重试", "Someone else changed the record; reload and try again"),
    "bad_condition": ("筛选条件无效：{error}", "Invalid filter: {error}"),
    "language": ("语言", "Language"),
    "edit": ("编辑", "Edit"),
    "back": ("返回", "Back"),
    "file_kept": ("已上传：{name}", "Uploaded: {name}"),
    "file_remove": ("移除", "Remove"),
    "search_keyword": ("关键词", "Keyword"),
    "search_keyword_hint": ("名称、说明、电话…", "Name, description, phone…"),
    "server_error": ("服务器错误", "Server error"),
    # --- approvals: inbox, task page, timeline, record panel
    "wf_inbox": ("待办", "Inbox"),
    "wf_counts": ("任务数量", "Task counts"),
    "wf_count_open": ("待处理", "open"),
    "wf_count_overdue": ("已超时", "overdue"),
    "wf_count_done": ("已处理", "done"),
    "wf_form": ("表单", "Form"),
    "wf_filter_open": ("待处理", "Open"),
    "wf_filter_done": ("已处理", "Done"),
    "wf_filter_all": ("全部", "All"),
    "wf_task": ("任务", "Task"),
    "wf_step": ("审批节点", "Step"),
    "wf_received": ("收到时间", "Received"),
    "wf_due": ("截止时间", "Due"),
    "wf_overdue": ("已超时", "Overdue"),
    "wf_no_tasks": ("暂无任务", "No tasks"),
    "wf_comment": ("审批意见", "Comment"),
    "wf_comment_too_long": ("意见不能超过 {n} 个字符", "The comment may be at most {n} characters"),
    "wf_target": ("转交 / 加签给", "Transfer to / add approver"),
    "wf_target_transfer": ("转交给", "Transfer to"),
    "wf_target_add": ("加签人员", "Approver to add"),
    "wf_pick_user": ("请选择转交或加签的人员", "Pick the user to transfer to or add"),
    "wf_unknown_user": ("用户 {name} 不存在", "No user {name}"),
    "wf_button_approve": ("同意", "Approve"),
    "wf_button_reject": ("驳回", "Reject"),
    "wf_button_return": ("退回", "Return for edits"),
    "wf_button_transfer": ("转交", "Transfer"),
    "wf_button_add_approver": ("加签", "Add approver"),
    "wf_button_comment": ("仅评论", "Comment only"),
    "wf_done_approve": ("已同意", "Approved"),
    "wf_done_reject": ("已驳回", "Rejected"),
    "wf_done_reject_final": ("已驳回，申请已结束并通知提交人", "Rejected: the request is closed and the submitter told"),
    "wf_done_reject_to": ("已驳回，申请退回到「{step}」重新审批", "Rejected: the request went back to “{step}” for another review"),
    "wf_done_approve_final": ("已同意，审批通过", "Approved: the request is approved"),
    "wf_done_approve_next": ("已同意，已转到「{step}」", "Approved: passed on to “{step}”"),
    "wf_reason_required": ("{action}时请填写审批意见（原因）", "Please give a reason (comment) to {action}"),
    "wf_confirm_reject": ("确定驳回此申请？", "Reject this request?"),
    "wf_my_decision": ("我的处理：{action} · {at}", "My decision: {action} · {at}"),
    "wf_done_return": ("已退回给提交人", "Returned to the submitter"),
    "wf_done_transfer": ("已转交", "Transferred"),
    "wf_done_add_approver": ("已加签", "Approver added"),
    "wf_done_comment": ("已添加评论", "Comment added"),
    "wf_done_withdraw": ("已撤回申请", "Request withdrawn"),
    "wf_done_resubmit": ("已重新提交", "Resubmitted"),
    "wf_remind": ("催办 {name}（{step}）", "Remind {name} ({step})"),
    "wf_done_remind": ("已催办，审批人会收到提醒", "Reminder sent to the approver"),
    "wf_remind_too_soon": ("刚催办过，请一小时后再试", "Already reminded within the hour; try again later"),
    "wf_cannot_remind": ("此任务当前不能催办", "This task cannot be reminded now"),
    "wf_cannot_withdraw": ("已有人审批，不能撤回", "Someone has already acted; it can no longer be withdrawn"),
    "wf_cannot_resubmit": ("此申请当前不能重新提交", "This request cannot be resubmitted now"),
    "wf_back_inbox": ("返回待办", "Back to the inbox"),
    "wf_reload_task": ("重新打开任务", "Reopen the task"),
    "wf_task_already": ("此任务已处理（{status}）", "This task is closed ({status})"),
    "wf_conflict": ("任务已被处理", "Task already handled"),
    "wf_conflict_task_closed": ("此任务已被处理，以下是当前状态。", "This task was already acted on; here is where it stands."),
    "wf_conflict_stale_task": ("任务在您打开后已变化，以下是当前状态。",
                               "The task changed after you opened it; here is where it stands."),
    "wf_status": ("审批状态", "Approval status"),
    "wf_current_step": ("当前节点", "Current step"),
    "wf_assignees": ("处理人", "Assignees"),
    "wf_diagram": ("流程图", "Flow diagram"),
    "wf_timeline": ("审批记录", "Timeline"),
    "wf_no_history": ("暂无记录", "Nothing yet"),
    "wf_system": ("系统", "System"),
    "wf_withdraw": ("撤回", "Withdraw"),
    "wf_edit_resubmit": ("修改并重新提交", "Edit and resubmit"),
    "wf_step_submitter": ("提交人修改", "Submitter edits"),
    "wf_step_start": ("发起", "Start"),
    "wf_status_running": ("审批中", "In approval"),
    "wf_status_approved": ("已批准", "Approved"),
    "wf_status_rejected": ("已驳回", "Rejected"),
    "wf_status_returned": ("已退回", "Returned for edits"),
    "wf_status_withdrawn": ("已撤回", "Withdrawn"),
    "wf_status_cancelled": ("已取消", "Cancelled"),
    "wf_status_completed": ("已完成", "Completed"),
    "wf_task_open": ("待处理", "Open"),
    "wf_task_done": ("已处理", "Done"),
    "wf_task_approved": ("已同意", "Approved"),
    "wf_task_rejected": ("已驳回", "Rejected"),
    "wf_task_returned": ("已退回", "Returned"),
    "wf_task_transferred": ("已转交", "Transferred"),
    "wf_task_cancelled": ("已取消", "Cancelled"),
    "wf_task_skipped": ("已跳过", "Skipped"),
    "wf_task_withdrawn": ("已撤回", "Withdrawn"),
    "wf_action_start": ("提交申请", "Submitted"),
    "wf_action_started": ("提交申请", "Submitted"),
    "wf_action_submit": ("提交申请", "Submitted"),
    "wf_action_approve": ("同意", "Approved"),
    "wf_action_reject": ("驳回", "Rejected"),
    "wf_action_return": ("退回", "Returned for edits"),
    "wf_action_transfer": ("转交", "Transferred"),
    "wf_action_add_approver": ("加签", "Added an approver"),
    "wf_action_comment": ("评论", "Commented"),
    "wf_action_withdraw": ("撤回", "Withdrew"),
    "wf_action_resubmit": ("重新提交", "Resubmitted"),
    "wf_action_remind": ("催办提醒", "Reminder sent"),
    "wf_action_escalate": ("超时升级", "Escalated"),
    "wf_action_skip": ("跳过（条件不满足）", "Skipped (condition false)"),
    "wf_action_approved": ("审批通过", "Approved"),
    "wf_action_step_approved": ("节点通过", "Step approved"),
    "wf_action_rejected_to": ("驳回到节点", "Rejected back to a step"),
    "wf_action_no_approver": ("无审批人，自动通过", "No approver: passed on"),
    "wf_action_branch": ("条件分支", "Branch taken"),
    "wf_task_cc": ("抄送", "Copy"),
    "wf_action_rejected": ("审批驳回", "Rejected"),

}


def get_locale() -> str:
    """The locale of the current request ("zh" or "en"), decided once per request."""
    cached = g.get("_locale")
    if cached:
        return str(cached)
    locale = _choose()
    g._locale = locale
    return locale


def _choose() -> str:
    asked = request.args.get("lang")
    if asked in LOCALES:
        return asked
    cookie = request.cookies.get(COOKIE)
    if cookie in LOCALES:
        return cookie
    user = g.get("user")
    if user is not None and user.locale:
        return normalize(user.locale)
    best = request.accept_languages.best_match(["zh", "zh-CN", "en"]) if request.accept_languages else None
    if best:
        return normalize(best)
    default = current_app.extensions["promoflow"].settings.locale
    return normalize(default)


def _merge_page_catalogs() -> None:
    """Pages with many messages keep them beside themselves (``web/i18n_*.py``,
    each a ``MESSAGES`` dict); one catalog is what ``t`` reads."""
    from . import (i18n_accounts, i18n_clicks, i18n_coupons, i18n_customers, i18n_datain, i18n_feedback,
                   i18n_followups, i18n_inbox, i18n_messages, i18n_rights)
    from . import i18n_dashboard  # issue 14

    from . import i18n_loyalty  # loyalty on the customer page (issue 13)

    for module in (i18n_feedback, i18n_messages, i18n_customers, i18n_inbox, i18n_followups, i18n_clicks,
                   i18n_datain, i18n_accounts, i18n_coupons, i18n_rights, i18n_loyalty, i18n_dashboard):
        for key, pair in module.MESSAGES.items():
            if key in CATALOG and CATALOG[key] != pair:
                raise RuntimeError(f"i18n key {key!r} is defined twice with different texts")
            CATALOG[key] = pair


_merge_page_catalogs()


def normalize(locale: str | None) -> str:
    """"zh-CN" → "zh", "en_US" → "en"; anything else → "zh"."""
    text = (locale or "").lower()
    return "en" if text.startswith("en") else "zh"


def t(key: str, **params: Any) -> str:
    """The catalog message ``key`` in the request's locale, filled with ``params``."""
    pair = CATALOG.get(key)
    if pair is None:
        return key
    text = pair[1 if get_locale() == "en" else 0]
    return text.format(**params) if params else text


def label(obj: Any, attr: str = "label") -> str:
    """A definition's label in the request's locale: ``label_en`` in English when
    written, else ``label`` as written (``attr="title"`` for form titles)."""
    base = getattr(obj, attr, None) or ""
    if get_locale() == "en":
        english = getattr(obj, f"{attr}_en", None)
        if english:
            return str(english)
    return str(base)


def remember_locale(response: Any) -> Any:
    """After-request hook: keep a ``?lang=`` choice in a cookie for a year."""
    asked = request.args.get("lang")
    if asked in LOCALES and request.cookies.get(COOKIE) != asked:
        response.set_cookie(COOKIE, asked, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response
