"""What each KPI is called and how it is computed, in Chinese and English,
for the pages' help, exports and reports (the same formulas as
docs/campaigns.md). Keyed by the field names of
:class:`engine.campaigns.kpis.CampaignKpis`; a test checks every figure has
an entry, so a new field cannot ship without its help.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["COST_LABELS", "FUNNEL_LABELS", "GLOSSARY", "STATUS_LABELS", "Term", "term"]


@dataclass(frozen=True)
class Term:
    """A KPI's title and formula in each language."""

    zh: str
    en: str
    formula_zh: str
    formula_en: str

    def title(self, locale: str) -> str:
        return self.zh if locale.startswith("zh") else self.en

    def formula(self, locale: str) -> str:
        return self.formula_zh if locale.startswith("zh") else self.formula_en


def _t(zh: str, en: str, fzh: str, fen: str) -> Term:
    return Term(zh, en, fzh, fen)


GLOSSARY: Mapping[str, Term] = MappingProxyType({
    "audience": _t("目标人群", "Audience", "范围内进入活动规则的顾客数（含对照组）",
                   "Customers who entered one of the campaign's rules in the range (control included)"),
    "control_size": _t("对照组人数", "Control group", "实验分组为对照组的顾客数", "Customers in the control arm"),
    "control_reached": _t("对照组误触达", "Control reached", "收到活动消息的对照组顾客数，应为 0",
                          "Control customers sent a campaign message; must be 0"),
    "reached": _t("触达人数", "Reached", "范围内至少发出一条活动消息的顾客数",
                  "Customers sent at least one campaign message in the range"),
    "sent": _t("发送数", "Sent", "服务商已受理的活动消息数", "Campaign messages accepted by the provider"),
    "delivered": _t("送达数", "Delivered", "有送达回执的消息数", "Messages with a delivery receipt"),
    "failed": _t("失败数", "Failed", "发送失败、死信或未送达的消息数", "Messages dead, failed or undelivered"),
    "clicked": _t("点击数", "Clicked", "短链被点击过的消息数", "Messages whose short link was clicked"),
    "clicked_customers": _t("点击人数", "Customers who clicked", "点击过活动消息的顾客数",
                            "Customers who clicked a campaign message"),
    "replied": _t("回复数", "Replied", "有回复或问卷回答关联的消息数", "Messages an answer or reply names"),
    "delivery_rate": _t("送达率", "Delivery rate", "送达数 ÷ 发送数", "delivered ÷ sent"),
    "failure_rate": _t("失败率", "Failure rate", "失败数 ÷ 写入的消息数", "failed ÷ messages written"),
    "click_rate": _t("点击率", "Click rate", "点击数 ÷ 发送数", "clicked ÷ sent"),
    "coupons_issued": _t("发券数", "Coupons issued", "范围内活动券池发出的券数",
                         "Coupons of the campaign's pools issued in the range"),
    "coupons_redeemed": _t("核销数", "Coupons redeemed", "其中已核销的券数", "Of them, redeemed"),
    "redemption_rate": _t("核销率", "Redemption rate", "核销数 ÷ 发券数", "redeemed ÷ issued"),
    "redeem_hours_avg": _t("平均核销时长(小时)", "Average hours to redeem", "发券到核销的平均小时数",
                           "Mean hours from issue to redemption"),
    "buyers": _t("购买人数", "Buyers", "有归因订单的顾客数", "Customers with an attributed order"),
    "converted_customers": _t("转化人数", "Converted customers", "被触达且有归因订单的顾客数",
                              "Reached customers with an attributed order"),
    "conversion_rate": _t("转化率", "Conversion rate", "转化人数 ÷ 触达人数", "converted ÷ reached"),
    "attributed_orders": _t("归因订单数", "Attributed orders", "按券码或末次触达窗口归因到活动的有效订单",
                            "Counted orders attributed by coupon code or last-touch window"),
    "coupon_orders": _t("券码归因订单", "Orders by coupon", "带活动券码的订单", "Orders carrying a campaign coupon"),
    "message_orders": _t("触达归因订单", "Orders by touch", "首次送达或点击后窗口内的订单",
                         "Orders within the window after the first delivery or click"),
    "attributed_revenue": _t("归因收入", "Attributed revenue", "归因订单的实收金额合计",
                             "Net amount of the attributed orders"),
    "total_revenue": _t("同期总收入", "Total revenue", "范围内全部有效订单的实收金额",
                        "Net amount of every counted order in the range"),
    "average_order_value": _t("客单价", "Average order value", "归因收入 ÷ 归因订单数",
                              "attributed revenue ÷ attributed orders"),
    "new_customers": _t("新客数", "New customers", "首个归因订单即其首单的顾客数",
                        "Buyers whose first attributed order was their first order"),
    "budget": _t("预算", "Budget", "活动预算", "The campaign's budget"),
    "total_cost": _t("总成本", "Total cost", "消息费 + 券抵扣 + 券成本 + 物料 + 人工/媒体等",
                     "messages + coupon discounts + coupon handling + materials + labour, media, other"),
    "budget_used_rate": _t("预算使用率", "Budget used", "总成本 ÷ 预算", "total cost ÷ budget"),
    "roi": _t("投资回报率", "ROI", "(归因收入 − 总成本) ÷ 总成本", "(attributed revenue − total cost) ÷ total cost"),
    "cac": _t("获客成本", "CAC", "总成本 ÷ 新客数", "total cost ÷ new customers"),
    "repurchase_rate_30d": _t("30 天复购率", "30-day repurchase", "首个归因订单满 30 天的购买者中 30 天内再次下单的比例",
                              "Of buyers 30+ days past their first attributed order, those who ordered again within 30 days"),
    "repurchase_rate_90d": _t("90 天复购率", "90-day repurchase", "首个归因订单满 90 天的购买者中 90 天内再次下单的比例",
                              "Of buyers 90+ days past their first attributed order, those who ordered again within 90 days"),
    "churn_rate": _t("流失率", "Churn", "1 − 90 天复购率", "1 − 90-day repurchase"),
    "clv": _t("客户终身价值", "CLV", "参与者（非对照组）进入后 365 天内人均实收",
              "Participants' (non-control) mean net revenue in the 365 days after entering"),
    "clv_control": _t("对照组终身价值", "CLV of non-participants", "对照组进入后 365 天内人均实收",
                      "The control arm's mean net revenue in the 365 days after entering"),
    "clv_difference": _t("终身价值差", "CLV difference", "参与者 CLV − 对照组 CLV", "participants' CLV − control's"),
    "nps": _t("净推荐值", "NPS", "(推荐者 9–10 分 − 贬损者 0–6 分) ÷ 回答数 × 100",
              "100 × (promoters 9–10 − detractors 0–6) ÷ answers"),
    "nps_answers": _t("评分人数", "NPS answers", "与活动相关的 0–10 分回答数", "Answers 0–10 tied to the campaign"),
    "nps_promoters": _t("推荐者", "Promoters", "9–10 分", "Scores 9–10"),
    "nps_passives": _t("中立者", "Passives", "7–8 分", "Scores 7–8"),
    "nps_detractors": _t("贬损者", "Detractors", "0–6 分", "Scores 0–6"),
    "tasks_created": _t("回访任务", "Follow-up tasks", "活动规则创建的回访任务数", "Follow-up tasks of the campaign's rules"),
    "tasks_answered": _t("已完成任务", "Tasks done", "已完成的回访任务数", "Follow-up tasks done"),
    "task_response_hours_avg": _t("平均响应(小时)", "Average response (hours)", "任务创建到完成的平均小时数",
                                  "Mean hours from task to answer"),
    "uplift_conversion": _t("转化提升", "Conversion uplift", "实验组转化率 − 对照组转化率，95% 置信区间（Newcombe）",
                            "treated − control conversion, 95 % interval (Newcombe)"),
    "uplift_revenue_per_customer": _t("人均收入提升", "Revenue per customer uplift",
                                      "实验组人均收入 − 对照组人均收入，95% 置信区间（Welch）",
                                      "treated − control revenue per customer, 95 % interval (Welch)"),
})

COST_LABELS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "messages_sms": ("短信费", "SMS"), "messages_email": ("邮件费", "E-mail"), "messages_wecom": ("企业微信", "WeCom"),
    "messages_webhook": ("Webhook", "Webhook"), "coupon_discounts": ("券抵扣", "Coupon discounts"),
    "coupon_handling": ("券成本", "Coupon handling"), "materials": ("物料", "Materials"), "labour": ("人工", "Labour"),
    "media": ("媒体投放", "Media"), "other": ("其他", "Other"),
})
FUNNEL_LABELS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "reached": ("触达", "Reached"), "clicked": ("点击", "Clicked"), "redeemed": ("核销", "Redeemed"),
    "ordered": ("下单", "Ordered"), "repurchased": ("复购", "Repurchased"),
})
STATUS_LABELS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "planned": ("未开始", "Planned"), "running": ("进行中", "Running"), "ended": ("已结束", "Ended"),
})


def term(name: str) -> Term | None:
    """The glossary entry of a KPI field, or None."""
    return GLOSSARY.get(name)
