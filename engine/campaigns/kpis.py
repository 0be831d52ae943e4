"""A campaign's KPIs as one typed value (issue 14), formed from the database's
aggregates (``engine.storage.kpis_repo.RawKpis``) with no further reading.

This layer is pure: ratios, costs, ROI, CAC, NPS, intervals and targets are
arithmetic over the counts, so they are tested without a database and the
formulas live in one place (they are also in docs/campaigns.md). A ratio
whose denominator is zero is ``None`` ("not measurable yet"), never 0.

Field names of :class:`CampaignKpis` are a contract with the dashboard,
exports and the API: add fields, never rename them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from engine.campaigns.costs import MessagePrice, message_costs
from engine.campaigns.stats import Interval, newcombe_diff, welch_diff
from engine.definitions.catalog import TARGET_METRICS
from engine.storage.kpis_repo import RETENTION_DAYS, RawKpis

__all__ = [
    "UPLIFT_METHOD",
    "ArmKpis",
    "CampaignKpis",
    "CohortRow",
    "CostLine",
    "DailyRow",
    "FunnelStage",
    "Interval",
    "KpiInputs",
    "RetentionCell",
    "TargetRow",
    "build_kpis",
    "kpis_from_json",
    "kpis_to_json",
]

CENT = Decimal("0.01")
UPLIFT_METHOD = ("conversion: Newcombe hybrid score interval (Wilson), 95 %; "
                 "revenue per customer: Welch t interval, 95 %")
#: NPS bands on the 0–10 scale.
PROMOTER_MIN, DETRACTOR_MAX = 9, 6


@dataclass(frozen=True)
class ArmKpis:
    """One experiment arm: ``arm`` is ``control``, a variant's key, or ``all``
    when the rules run no experiment. Conversion and revenue count orders
    within the attribution window after the customer entered (so a control
    customer, who receives nothing, is measured the same way). Uplifts are
    against the control arm (None for the control itself or without one)."""

    arm: str
    customers: int
    converted: int
    conversion_rate: float | None
    revenue: Decimal
    revenue_per_customer: Decimal | None
    conversion_uplift: Interval | None
    revenue_uplift: Interval | None


@dataclass(frozen=True)
class RetentionCell:
    """Of a cohort's buyers whose first attributed order is at least ``days``
    old (``matured``), how many ordered again within ``days`` (``retained``)."""

    days: int
    matured: int
    retained: int
    rate: float | None


@dataclass(frozen=True)
class CohortRow:
    """Buyers by the business-zone month of their first attributed order."""

    cohort: str
    customers: int
    cells: tuple[RetentionCell, ...]


@dataclass(frozen=True)
class DailyRow:
    """One business day: messages sent, coupons redeemed, attributed revenue."""

    day: str
    sends: int
    redemptions: int
    revenue: Decimal


@dataclass(frozen=True)
class FunnelStage:
    """Customers at one stage: reached, clicked, redeemed, ordered, repurchased."""

    stage: str
    customers: int


@dataclass(frozen=True)
class CostLine:
    """One part of the total cost (``category``: messages_sms, messages_email,
    messages_wecom, …, coupon_discounts, coupon_handling, materials, labour,
    media, other)."""

    category: str
    amount: Decimal


@dataclass(frozen=True)
class TargetRow:
    """A target against its actual; ``met`` is None while the actual is unknown."""

    metric: str
    target: Decimal
    actual: float | None
    met: bool | None
    higher_is_better: bool


@dataclass(frozen=True)
class CampaignKpis:
    """Everything a manager reads about one campaign over one range."""

    campaign_id: str
    start: datetime
    end: datetime
    as_of: datetime
    attribution_window_days: int
    # reach
    audience: int
    control_size: int
    reached: int
    sent: int
    delivered: int
    failed: int
    clicked: int
    clicked_customers: int
    replied: int
    delivery_rate: float | None
    failure_rate: float | None
    click_rate: float | None
    # coupons
    coupons_issued: int
    coupons_redeemed: int
    redemption_rate: float | None
    redeem_hours_avg: float | None
    # orders
    buyers: int
    converted_customers: int
    conversion_rate: float | None
    attributed_orders: int
    coupon_orders: int
    message_orders: int
    attributed_revenue: Decimal
    #: Every counted order of the range; None unless asked for (``KpiQuery.with_total_revenue``).
    total_revenue: Decimal | None
    average_order_value: Decimal | None
    new_customers: int
    # money
    budget: Decimal | None
    total_cost: Decimal
    budget_used_rate: float | None
    roi: float | None
    cac: Decimal | None
    # loyalty
    repurchase_rate_30d: float | None
    repurchase_rate_90d: float | None
    churn_rate: float | None
    clv: Decimal | None
    clv_control: Decimal | None
    clv_difference: Decimal | None
    # answers and follow-up
    nps: float | None
    nps_answers: int
    nps_promoters: int
    nps_passives: int
    nps_detractors: int
    nps_distribution: tuple[int, ...]
    feedback_tags: tuple[tuple[str, int], ...]
    tasks_created: int
    tasks_answered: int
    task_response_hours_avg: float | None
    # experiment
    uplift_conversion: Interval | None
    uplift_revenue_per_customer: Interval | None
    uplift_method: str
    arms: tuple[ArmKpis, ...]
    # series and tables
    daily: tuple[DailyRow, ...]
    funnel: tuple[FunnelStage, ...]
    cohorts: tuple[CohortRow, ...]
    costs: tuple[CostLine, ...]
    targets: tuple[TargetRow, ...]
    #: Control-arm customers who were sent a campaign message: must stay 0
    #: (a holdout receives nothing); anything else is an alarm.
    control_reached: int = 0


@dataclass(frozen=True)
class KpiInputs:
    """What the pure layer needs besides the aggregates: the campaign's own
    figures and the prices from definitions."""

    campaign_id: str
    start: datetime
    end: datetime
    as_of: datetime
    attribution_window_days: int
    budget: Decimal | None
    materials_cost: Decimal
    manual_costs: Mapping[str, Decimal]
    prices: Mapping[str, MessagePrice]
    default_prices: Mapping[str, MessagePrice]
    pool_handling: Mapping[str, Decimal]
    targets: Sequence[tuple[str, Decimal]]


def _rate(num: float, den: float) -> float | None:
    return num / den if den else None


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _arm_name(arm: str) -> str:
    return arm or "all"


def build_kpis(raw: RawKpis, inputs: KpiInputs) -> CampaignKpis:
    """Form every KPI from the aggregates (formulas: docs/campaigns.md)."""
    m = raw.messages
    # --- costs
    lines: dict[str, Decimal] = dict(message_costs(raw.sends_by_length, inputs.prices, inputs.default_prices))
    if raw.discount_total:
        lines["coupon_discounts"] = raw.discount_total
    handling = sum((Decimal(n) * inputs.pool_handling.get(pool, Decimal(0)) for pool, n in raw.issued_by_pool.items()),
                   Decimal(0))
    if handling:
        lines["coupon_handling"] = _cents(handling)
    if inputs.materials_cost:
        lines["materials"] = lines.get("materials", Decimal(0)) + inputs.materials_cost
    for category, amount in inputs.manual_costs.items():
        lines[category] = lines.get(category, Decimal(0)) + amount
    costs = tuple(CostLine(k, _cents(v)) for k, v in sorted(lines.items()))
    total_cost = _cents(sum((c.amount for c in costs), Decimal(0)))
    revenue = raw.attributed_revenue
    roi = float((revenue - total_cost) / total_cost) if total_cost else None
    cac = _cents(total_cost / raw.new_customers) if raw.new_customers else None
    # --- NPS
    dist = tuple(raw.nps_scores.get(s, 0) for s in range(11))
    answers = sum(dist)
    promoters = sum(dist[PROMOTER_MIN:])
    detractors = sum(dist[:DETRACTOR_MAX + 1])
    nps = 100.0 * (promoters - detractors) / answers if answers else None
    # --- arms and uplift
    control = next((a for a in raw.arms if a.arm == "control"), None)
    treated = [a for a in raw.arms if a.arm != "control"]
    arms = []
    for a in raw.arms:
        conv = rev = None
        if control is not None and a.arm != "control":
            conv = newcombe_diff(a.converted, a.customers, control.converted, control.customers)
            rev = welch_diff(a.customers, float(a.revenue), a.revenue_sq, control.customers,
                             float(control.revenue), control.revenue_sq)
        arms.append(ArmKpis(_arm_name(a.arm), a.customers, a.converted, _rate(a.converted, a.customers), a.revenue,
                            _cents(a.revenue / a.customers) if a.customers else None, conv, rev))
    uplift_conv = uplift_rev = None
    clv = clv_control = clv_diff = None
    if treated:
        n = sum(a.customers for a in treated)
        clv = _cents(sum((a.clv_revenue for a in treated), Decimal(0)) / n) if n else None
        if control is not None:
            uplift_conv = newcombe_diff(sum(a.converted for a in treated), n, control.converted, control.customers)
            uplift_rev = welch_diff(n, float(sum((a.revenue for a in treated), Decimal(0))),
                                    sum(a.revenue_sq for a in treated), control.customers,
                                    float(control.revenue), control.revenue_sq)
    if control is not None and control.customers:
        clv_control = _cents(control.clv_revenue / control.customers)
        if clv is not None:
            clv_diff = clv - clv_control
    # --- loyalty
    r30, r90 = raw.repurchase[30], raw.repurchase[90]
    repurchase_30, repurchase_90 = _rate(r30[1], r30[0]), _rate(r90[1], r90[0])
    cohorts = tuple(
        CohortRow(name, size, tuple(RetentionCell(d, mat, kept, _rate(kept, mat))
                                    for d, (mat, kept) in zip(RETENTION_DAYS, cells)))
        for name, size, cells in raw.cohorts)
    funnel = tuple(FunnelStage(s, n) for s, n in (
        ("reached", raw.reached), ("clicked", raw.clicked_customers), ("redeemed", raw.redeemed_customers),
        ("ordered", raw.buyers), ("repurchased", raw.repurchased)))
    tasks_created, tasks_answered, task_seconds = raw.tasks
    kpis = CampaignKpis(
        campaign_id=inputs.campaign_id, start=inputs.start, end=inputs.end, as_of=inputs.as_of,
        attribution_window_days=inputs.attribution_window_days,
        audience=raw.audience, control_size=raw.control, reached=raw.reached, sent=m["sent"],
        delivered=m["delivered"], failed=m["failed"], clicked=m["clicked"], clicked_customers=raw.clicked_customers,
        replied=raw.replied, delivery_rate=_rate(m["delivered"], m["sent"]),
        failure_rate=_rate(m["failed"], m["written"]), click_rate=_rate(m["clicked"], m["sent"]),
        coupons_issued=raw.coupons_issued, coupons_redeemed=raw.coupons_redeemed,
        redemption_rate=_rate(raw.coupons_redeemed, raw.coupons_issued),
        redeem_hours_avg=raw.redeem_seconds_avg / 3600.0 if raw.redeem_seconds_avg is not None else None,
        buyers=raw.buyers, converted_customers=raw.converted_customers,
        conversion_rate=_rate(raw.converted_customers, raw.reached), attributed_orders=raw.attributed_orders,
        coupon_orders=raw.coupon_orders, message_orders=raw.message_orders, attributed_revenue=revenue,
        total_revenue=raw.total_revenue,
        average_order_value=_cents(revenue / raw.attributed_orders) if raw.attributed_orders else None,
        new_customers=raw.new_customers, budget=inputs.budget, total_cost=total_cost,
        budget_used_rate=float(total_cost / inputs.budget) if inputs.budget else None, roi=roi, cac=cac,
        repurchase_rate_30d=repurchase_30, repurchase_rate_90d=repurchase_90,
        churn_rate=1.0 - repurchase_90 if repurchase_90 is not None else None,
        clv=clv, clv_control=clv_control, clv_difference=clv_diff,
        nps=nps, nps_answers=answers, nps_promoters=promoters, nps_passives=answers - promoters - detractors,
        nps_detractors=detractors, nps_distribution=dist,
        feedback_tags=tuple(sorted(raw.feedback_tags.items(), key=lambda kv: (-kv[1], kv[0]))),
        tasks_created=tasks_created, tasks_answered=tasks_answered,
        task_response_hours_avg=task_seconds / 3600.0 if task_seconds is not None else None,
        uplift_conversion=uplift_conv, uplift_revenue_per_customer=uplift_rev, uplift_method=UPLIFT_METHOD,
        arms=tuple(arms), daily=tuple(DailyRow(d, s, k, v) for d, s, k, v in raw.daily), funnel=funnel,
        cohorts=cohorts, costs=costs, targets=(), control_reached=raw.control_reached,
    )
    targets = tuple(_target(kpis, metric, target) for metric, target in inputs.targets)
    return _replace_targets(kpis, targets)


def _replace_targets(kpis: CampaignKpis, targets: tuple[TargetRow, ...]) -> CampaignKpis:
    from dataclasses import replace

    return replace(kpis, targets=targets)


def _target(kpis: CampaignKpis, metric: str, target: Decimal) -> TargetRow:
    higher = TARGET_METRICS.get(metric, True)
    value = getattr(kpis, metric, None)
    actual = float(value) if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) else None
    met = None if actual is None else (actual >= float(target) if higher else actual <= float(target))
    return TargetRow(metric, target, actual, met, higher)


# ------------------------------------------------------------- JSON

def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        from engine.storage.times import from_db_time

        aware = value.astimezone(UTC) if value.tzinfo is not None else from_db_time(value)
        return aware.isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def kpis_to_json(kpis: CampaignKpis) -> dict[str, Any]:
    """The API's and the snapshot's form: money as decimal strings with two
    places (as the orders API), times as ISO 8601 UTC with ``Z``, rates as
    fractions (0.25 = 25 %), intervals as ``{estimate, low, high}``."""
    return {f.name: _plain(_shallow(getattr(kpis, f.name))) for f in fields(kpis)}


def _shallow(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple):
        return [_shallow(v) for v in value]
    return value


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _interval(value: Any) -> Interval | None:
    return None if value is None else Interval(value["estimate"], value["low"], value["high"])


_MONEY_FIELDS = {"attributed_revenue", "total_revenue", "average_order_value", "budget", "total_cost", "cac",
                 "clv", "clv_control", "clv_difference"}


def kpis_from_json(body: Mapping[str, Any]) -> CampaignKpis:
    """Read back what :func:`kpis_to_json` wrote (a snapshot)."""
    out: dict[str, Any] = {}
    for f in fields(CampaignKpis):
        if f.name not in body and f.default is not MISSING:
            out[f.name] = f.default  # a snapshot stored before the field was added
            continue
        v: Any = body.get(f.name)  # JSON: each field's shape is known by its name below
        if f.name in ("start", "end", "as_of"):
            out[f.name] = _time(v)
        elif f.name in _MONEY_FIELDS:
            out[f.name] = _dec(v)
        elif f.name in ("uplift_conversion", "uplift_revenue_per_customer"):
            out[f.name] = _interval(v)
        elif f.name == "arms":
            out[f.name] = tuple(ArmKpis(a["arm"], a["customers"], a["converted"], a["conversion_rate"],
                                        Decimal(a["revenue"]), _dec(a["revenue_per_customer"]),
                                        _interval(a["conversion_uplift"]), _interval(a["revenue_uplift"]))
                                for a in v)
        elif f.name == "daily":
            out[f.name] = tuple(DailyRow(d["day"], d["sends"], d["redemptions"], Decimal(d["revenue"])) for d in v)
        elif f.name == "funnel":
            out[f.name] = tuple(FunnelStage(s["stage"], s["customers"]) for s in v)
        elif f.name == "cohorts":
            out[f.name] = tuple(CohortRow(c["cohort"], c["customers"],
                                          tuple(RetentionCell(**cell) for cell in c["cells"])) for c in v)
        elif f.name == "costs":
            out[f.name] = tuple(CostLine(c["category"], Decimal(c["amount"])) for c in v)
        elif f.name == "targets":
            out[f.name] = tuple(TargetRow(t["metric"], Decimal(t["target"]), t["actual"], t["met"],
                                          t["higher_is_better"]) for t in v)
        elif f.name == "nps_distribution":
            out[f.name] = tuple(v)
        elif f.name == "feedback_tags":
            out[f.name] = tuple((t, n) for t, n in v)
        else:
            out[f.name] = v
    return CampaignKpis(**out)
