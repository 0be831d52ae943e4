"""Chinese and English for the inbox's 批量审批 (bulk approve / reject, web/inbox.py);
merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "wf_bulk_title": ("批量审批", "Bulk approval"),
    "wf_bulk_select_task": ("选择任务 #{id}", "Select task #{id}"),
    "wf_bulk_select_all": ("全选", "Select all"),
    "wf_bulk_selected": ("已选 {n} 项", "{n} selected"),
    "wf_bulk_help": ("勾选待处理的任务，填写意见（可选），然后批量同意或驳回；最多 {limit} 项。",
                     "Tick open tasks, add a comment if you like, then approve or reject them all; at most {limit}."),
    "wf_bulk_approve": ("批量同意", "Approve selected"),
    "wf_bulk_reject": ("批量驳回", "Reject selected"),
    "wf_bulk_confirm_reject": ("确定驳回所选的 {n} 项吗？", "Reject the {n} selected tasks?"),
    "wf_bulk_none": ("请先勾选要处理的任务", "Select the tasks to act on first"),
    "wf_bulk_bad_ids": ("所选任务无效，未做任何处理", "The selection is not valid; nothing was done"),
    "wf_bulk_too_many": ("一次最多处理 {limit} 项，您选择了 {n} 项；未做任何处理",
                         "At most {limit} tasks at a time; you selected {n}. Nothing was done"),
    "wf_bulk_failed": ("批量处理未完成，请稍后重试；未做任何处理",
                       "The bulk action did not go through; nothing was done. Please try again"),
    "wf_bulk_done_approve": ("已同意 {n} 项", "{n} approved"),
    "wf_bulk_done_reject": ("已驳回 {n} 项", "{n} rejected"),
    "wf_bulk_refused": ("，{m} 项未处理：{reasons}", "; {m} not done: {reasons}"),
    "wf_bulk_reason": ("{reason}（{ids}）", "{reason} ({ids})"),
    "wf_bulk_reason_sep": ("；", "; "),
    "wf_bulk_id_sep": ("、", ", "),
    "wf_bulk_more": (" 及另外 {k} 项", " and {k} more"),
    "wf_bulk_why_not_assigned": ("不是您的任务", "not your task"),
    "wf_bulk_why_task_not_found": ("任务不存在", "no such task"),
    "wf_bulk_why_task_closed": ("已被处理", "already handled"),
    "wf_bulk_why_stale_task": ("任务刚被他人修改，请重试", "changed meanwhile, try again"),
    "wf_bulk_why_not_running": ("流程已结束", "the request is no longer in approval"),
    "wf_bulk_why_not_allowed": ("此节点不允许该操作", "this step does not allow it"),
    "wf_bulk_why_other": ("无法处理（{code}）", "could not be done ({code})"),
    # separation of duties (engine/approvals/duties.py): transfer / add approver
    "wf_target_is_submitter": ("{name} 是本申请的提交人，不能转交或加签给本人审批（职责分离）",
                               "{name} submitted this request and may not be given its approval "
                               "(separation of duties)"),
    "wf_target_already_decided": ("{name} 已对本申请做过审批决定，不能再转交或加签给他（职责分离）",
                                  "{name} has already decided on this request and may not be given another "
                                  "of its tasks (separation of duties)"),
    "wf_comment_empty": ("请先填写评论内容", "Write the comment first"),
}
