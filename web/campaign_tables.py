"""The tables and charts of the dashboard pages, built from the KPI body that
``GET /api/v1/campaigns/<id>/kpis`` answers (issue 14, item 5).

Why from the API's body: the page, its exports and the API then show the same
numbers by construction, and the browser test can compare one with the other.
Nothing is computed here: every value is read from the KPI snapshot; this
module only chooses rows, columns, labels and chart kinds.

The body is ``{"campaign": CampaignView.to_json(), "kpis": kpis_to_json(CampaignKpis)}``
(``engine.campaigns``; :mod:`web.campaign_source`): ``kpis`` is exactly what
``GET /api/v1/campaigns/<id>/kpis`` answers — flat headline numbers (rates as
fractions, money as decimal strings), ``funnel`` (stage, customers), ``daily``
(day, sends, redemptions, revenue), ``cohorts`` (cohort, customers, cells by
days), ``nps_distribution`` (answers per score 0–10), ``feedback_tags``,
``arms`` (with uplift intervals), ``costs`` (category, amount) and
``targets`` (metric, target, actual, met).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .charts import Chart, Column, Table

Translate = Callable[..., str]

#: Headline KPIs in page order: (field of the KPI body, label key, kind).
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("audience", "k_audience", "int"),
    ("control_size", "k_control_size", "int"),
    ("reached", "k_reached", "int"),
    ("sent", "k_sent", "int"),
    ("delivered", "k_delivered", "int"),
    ("failed", "k_failed", "int"),
    ("failure_rate", "k_failure_rate", "percent"),
    ("clicked_customers", "k_clicked", "int"),
    ("click_rate", "k_click_rate", "percent"),
    ("replied", "k_replied", "int"),
    ("coupons_issued", "k_coupons_issued", "int"),
    ("coupons_redeemed", "k_coupons_redeemed", "int"),
    ("redemption_rate", "k_redemption_rate", "percent"),
    ("redeem_hours_avg", "k_time_to_redeem", "number"),
    ("converted_customers", "k_converted", "int"),
    ("conversion_rate", "k_conversion_rate", "percent"),
    ("attributed_orders", "k_orders", "int"),
    ("attributed_revenue", "k_revenue", "money"),
    ("average_order_value", "k_aov", "money"),
    ("total_cost", "k_cost", "money"),
    ("budget", "c_budget", "money"),
    ("budget_used_rate", "k_budget_spent", "percent"),
    ("roi", "k_roi", "percent"),
    ("new_customers", "k_new_customers", "int"),
    ("cac", "k_cac", "money"),
    ("repurchase_rate_30d", "k_repurchase_30d", "percent"),
    ("repurchase_rate_90d", "k_repurchase_90d", "percent"),
    ("churn_rate", "k_churn", "percent"),
    ("clv", "k_clv_participants", "money"),
    ("clv_control", "k_clv_control", "money"),
    ("clv_difference", "k_clv", "money"),
    ("nps", "k_nps", "number"),
    ("nps_answers", "k_nps_answers", "int"),
    ("task_response_hours_avg", "k_task_response", "number"),
)
#: The few KPIs the overview shows per campaign.
OVERVIEW_KPIS = ("sent", "redemption_rate", "conversion_rate", "attributed_revenue", "total_cost", "roi", "nps")
FUNNEL_STAGES = ("reached", "clicked", "redeemed", "ordered", "repurchased")
#: Retention periods of the cohort matrix: (days, label key); the engine's RETENTION_DAYS.
COHORT_PERIODS = ((7, "col_1w"), (30, "col_1m"), (90, "col_3m"), (180, "col_6m"))
STATUSES = ("planned", "running", "ended")


def _num(value: Any) -> Any:
    """Numbers from JSON (money comes as strings, to keep cents exact)."""
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            return value
    return value


def _kpis(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("kpis") or {}


def _label(t: Translate, key: str, fallback: str) -> str:
    text = t(key)
    return fallback if text == key else text


def headline_table(body: Mapping[str, Any], t: Translate) -> Table:
    """Every headline KPI as one row (metric, value); a KPI the body lacks is left out."""
    kpis = _kpis(body)
    rows, kinds, keys = [], [], []
    for key, label, kind in HEADLINE:
        if key in kpis:
            rows.append((t(label), _num(kpis[key])))
            kinds.append(kind)
            keys.append(key)
    return Table("headline", t("t_headline"), (Column("label", t("col_metric")), Column("value", t("col_value"), "auto")),
                 tuple(rows), row_kinds=tuple(kinds), row_keys=tuple(keys))


def funnel_table(body: Mapping[str, Any], t: Translate) -> Table:
    stages = {str(s.get("stage")): s.get("customers") for s in _kpis(body).get("funnel") or ()}
    shown = [stage for stage in FUNNEL_STAGES if stage in stages]
    return Table("funnel", t("t_funnel"), (Column("label", t("col_stage")), Column("customers", t("col_customers"), "int")),
                 tuple((t(f"stage_{stage}"), stages[stage]) for stage in shown), row_keys=tuple(shown))


def daily_table(body: Mapping[str, Any], t: Translate) -> Table:
    days = list(_kpis(body).get("daily") or ())
    rows = tuple((d.get("day"), d.get("sends"), d.get("redemptions"), _num(d.get("revenue"))) for d in days)
    return Table("daily", t("t_daily"), (Column("day", t("col_day"), "text"), Column("sends", t("col_sent"), "int"),
                                         Column("redemptions", t("col_redeemed"), "int"),
                                         Column("revenue", t("col_revenue"), "money")), rows,
                 row_keys=tuple(str(d.get("day")) for d in days))


def cohort_table(body: Mapping[str, Any], t: Translate) -> Table:
    rows, keys = [], []
    for c in _kpis(body).get("cohorts") or ():
        rates = {int(cell.get("days")): cell.get("rate") for cell in c.get("cells") or ()}
        rows.append((c.get("cohort"), c.get("customers"), *(rates.get(d) for d, _ in COHORT_PERIODS)))
        keys.append(str(c.get("cohort")))
    return Table("cohorts", t("t_cohorts"),
                 (Column("cohort", t("col_cohort")), Column("customers", t("col_size"), "int"),
                  *(Column(f"d{d}", t(label), "percent") for d, label in COHORT_PERIODS)), tuple(rows),
                 row_keys=tuple(keys))


def nps_table(body: Mapping[str, Any], t: Translate) -> Table:
    dist = list(_kpis(body).get("nps_distribution") or ())
    rows = tuple((score, n) for score, n in enumerate(dist)) if any(dist) else ()
    return Table("nps", t("t_nps"), (Column("score", t("col_score"), "int"), Column("answers", t("col_answers"), "int")),
                 rows, row_keys=tuple(str(r[0]) for r in rows))


def tags_table(body: Mapping[str, Any], t: Translate) -> Table:
    tags = [(str(x[0]), x[1]) for x in _kpis(body).get("feedback_tags") or ()]
    return Table("tags", t("t_tags"), (Column("tag", t("col_tag")), Column("count", t("col_count"), "int")),
                 tuple(tags), row_keys=tuple(tag for tag, _ in tags))


def _interval(value: Any) -> tuple[Any, Any, Any]:
    if not isinstance(value, Mapping):
        return None, None, None
    return value.get("estimate"), value.get("low"), value.get("high")


def arms_table(body: Mapping[str, Any], t: Translate) -> Table:
    """Each arm (variants, control) with its conversion uplift and revenue
    uplift per customer against the control and their 95 % intervals; last,
    all treated customers against the control (the campaign's uplift)."""
    kpis = _kpis(body)
    rows, keys = [], []
    for a in kpis.get("arms") or ():
        arm = str(a.get("arm"))
        name = t("arm_control") if arm == "control" else (t("arm_all") if arm == "all" else arm)
        keys.append(arm)
        rows.append((name, a.get("customers"), a.get("converted"), a.get("conversion_rate"),
                     _num(a.get("revenue_per_customer")), *_interval(a.get("conversion_uplift")),
                     *_interval(a.get("revenue_uplift"))))
    if kpis.get("uplift_conversion") or kpis.get("uplift_revenue_per_customer"):
        keys.append("treated")
        rows.append((t("arm_treated"), None, None, None, None, *_interval(kpis.get("uplift_conversion")),
                     *_interval(kpis.get("uplift_revenue_per_customer"))))
    return Table("arms", t("t_arms"), (
        Column("label", t("col_arm")), Column("customers", t("col_customers"), "int"),
        Column("converted", t("k_converted"), "int"), Column("conversion_rate", t("col_conversion"), "percent"),
        Column("revenue_per_customer", t("col_rev_per_customer"), "money"),
        Column("conversion_uplift", t("col_uplift"), "percent"), Column("conversion_low", t("col_ci_low"), "percent"),
        Column("conversion_high", t("col_ci_high"), "percent"),
        Column("revenue_uplift", t("col_rev_uplift"), "number"), Column("revenue_low", t("col_ci_low"), "number"),
        Column("revenue_high", t("col_ci_high"), "number"),
    ), tuple(rows), row_keys=tuple(keys))


def costs_table(body: Mapping[str, Any], t: Translate) -> Table:
    costs = list(_kpis(body).get("costs") or ())
    return Table("costs", t("t_costs"), (Column("label", t("col_category")), Column("amount", t("col_amount"), "money")),
                 tuple((_label(t, f"k_cost_{c.get('category')}", str(c.get("category"))), _num(c.get("amount")))
                       for c in costs),
                 row_keys=tuple(str(c.get("category")) for c in costs))


def targets_table(body: Mapping[str, Any], t: Translate) -> Table:
    """Targets against actuals, each in its metric's unit (a rate as a percentage)."""
    targets = list(_kpis(body).get("targets") or ())
    kinds = {key: kind for key, _, kind in HEADLINE}
    rows = tuple((_metric_label(str(x.get("metric")), t), _num(x.get("target")), _num(x.get("actual")),
                  None if x.get("met") is None else (t("yes") if x.get("met") else t("no"))) for x in targets)
    return Table("targets", t("t_targets"), (
        Column("label", t("col_metric")), Column("target", t("col_target"), "auto"),
        Column("actual", t("col_actual"), "auto"), Column("met", t("col_met"))), rows,
        row_kinds=tuple(kinds.get(str(x.get("metric")), "number") for x in targets),
        row_keys=tuple(str(x.get("metric")) for x in targets))


def _metric_label(metric: str, t: Translate) -> str:
    for key, label, _ in HEADLINE:
        if key == metric:
            return t(label)
    return metric


@dataclass(frozen=True)
class CampaignPage:
    """Everything the campaign page shows: its tables (in page order) and the
    charts drawn from them."""

    tables: tuple[Table, ...]
    charts: tuple[Chart, ...]

    def table(self, table_id: str) -> Table | None:
        return next((tb for tb in self.tables if tb.id == table_id), None)


def campaign_page(body: Mapping[str, Any], t: Translate) -> CampaignPage:
    """The campaign page's tables and charts from its KPI body."""
    headline, funnel, daily = headline_table(body, t), funnel_table(body, t), daily_table(body, t)
    cohorts, nps, tags, arms = cohort_table(body, t), nps_table(body, t), tags_table(body, t), arms_table(body, t)
    costs, targets = costs_table(body, t), targets_table(body, t)
    charts = [
        Chart("funnel", "funnel", funnel, "label", ("customers",)),
        Chart("daily", "line", daily, "day", ("sends", "redemptions", "revenue"), {"dual_axis": True}),
        Chart("cohorts", "heatmap", cohorts, "cohort", tuple(f"d{d}" for d, _ in COHORT_PERIODS)),
        Chart("nps", "bar", nps, "score", ("answers",)),
        Chart("arms", "bar", arms, "label",
              ("conversion_rate", "conversion_uplift", "conversion_low", "conversion_high")),
        Chart("costs", "pie", costs, "label", ("amount",)),
    ]
    return CampaignPage((headline, funnel, daily, cohorts, nps, tags, arms, costs, targets),
                        tuple(c for c in charts if c.has_data))


def overview_table(rows: Sequence[Mapping[str, Any]], t: Translate, locale: str = "zh") -> Table:
    """One row per campaign: title (``title_en`` in English when written),
    status, owner, dates, budget and the overview KPIs."""
    labels = {key: (label, kind) for key, label, kind in HEADLINE}
    out = []
    for r in rows:
        kpis = r.get("kpis") or {}
        status = str(r.get("status") or "")
        title = r.get("title_en") if locale == "en" and r.get("title_en") else r.get("title")
        out.append((title, t(f"status_{status}") if status in STATUSES else status,
                    r.get("owner"), r.get("starts_on"), r.get("ends_on"), _num(r.get("budget")),
                    *(_num(kpis.get(k)) for k in OVERVIEW_KPIS)))
    return Table("campaigns", t("t_overview"), (
        Column("title", t("c_campaign")), Column("status", t("c_status")),
        Column("owner", t("c_owner")), Column("starts_on", t("c_starts")), Column("ends_on", t("c_ends")),
        Column("budget", t("c_budget"), "money"),
        *(Column(k, t(labels[k][0]), labels[k][1]) for k in OVERVIEW_KPIS),
    ), tuple(out), empty=t("dash_no_campaigns"), row_keys=tuple(str(r.get("id")) for r in rows))


def trend_chart(campaign_id: str, title: str, daily: Sequence[Mapping[str, Any]], t: Translate) -> Chart:
    """The overview's sparkline: a campaign's daily revenue."""
    table = Table(f"trend-{campaign_id}", f"{title} · {t('c_trend')}",
                  (Column("day", t("col_day")), Column("revenue", t("col_revenue"), "money")),
                  tuple((d.get("day"), _num(d.get("revenue"))) for d in daily))
    return Chart(f"trend-{campaign_id}", "sparkline", table, "day", ("revenue",))


__all__ = [
    "FUNNEL_STAGES",
    "HEADLINE",
    "OVERVIEW_KPIS",
    "CampaignPage",
    "campaign_page",
    "overview_table",
    "trend_chart",
]
