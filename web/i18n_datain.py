"""Labels of the data-in pages (the merge action on a customer's page)."""

MESSAGES: dict[str, tuple[str, str]] = {
    "ident_member_no": ("会员号", "Member number"),
    "ident_wecom": ("企业微信外部联系人", "WeCom external userid"),
    "ident_phone": ("其他手机（合并）", "Other phone (merged)"),
    "ident_email": ("其他邮箱（合并）", "Other e-mail (merged)"),
    "ident_external_id": ("其他外部编号（合并）", "Other external id (merged)"),
    "merge_title": ("合并客户", "Merge customers"),
    "merge_hint": ("同一个人被录入了两次？把另一位客户合并到当前客户：订单、优惠券、旅程、消息、反馈、授权和标签都归入当前客户，另一位客户被删除。",
                   "The same person came in twice? Merge the other customer into this one: orders, coupons, "
                   "journeys, messages, feedback, consents and tags move here, and the other customer is removed."),
    "merge_from": ("要合并进来的客户编号", "Id of the customer to merge into this one"),
    "merge_confirm": ("我已核实两位是同一个人", "I checked that both are the same person"),
    "merge_submit": ("合并", "Merge"),
    "merge_done": ("已将客户 #{loser} 合并到 #{survivor}", "Customer #{loser} was merged into #{survivor}"),
    "merge_need_confirm": ("请先勾选确认", "Tick the confirmation first"),
    "merge_bad_id": ("请输入另一位客户的编号", "Enter the other customer's id"),
    "merge_not_found": ("没有编号为 #{id} 的客户", "There is no customer #{id}"),
    "merge_conflict": ("无法合并：{detail}", "Cannot merge: {detail}"),
    "merge_same": ("不能把客户合并到自己", "A customer cannot be merged into itself"),
}
