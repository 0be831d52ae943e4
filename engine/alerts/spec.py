"""The ``alert`` definition: what is watched, when it counts as a breach, and
who hears about it.

Why a definition and not code: like rules, alerts are business data that
marketing ops write and publish (``kind: alert`` in YAML). The threshold is a
number in the KPI's own unit (NPS −100…100, yuan, or a rate as 0.05) or a
percentage written ``5%`` (stored as 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.definitions.context import Context
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import Source
from engine.durations import parse_duration

#: KPIs an alert may watch, and what counts their denominator (for ``min_count``).
ALERT_KPIS: dict[str, str] = {
    "redemption_rate": "coupons_issued",
    "conversion_rate": "reached",
    "click_rate": "sent",
    "nps": "nps_answers",
    "sms_failure_rate": "sms_sent",
    "failure_rate": "sent",
    "budget_spent": "budget",
    "roi": "cost",
    "cost": "cost",
    "revenue": "attributed_orders",
}
#: Where each alert KPI (and denominator) is in the campaign KPI body
#: (``engine.campaigns.kpis.CampaignKpis`` field names) when the names differ.
KPI_FIELDS: dict[str, str] = {
    "budget_spent": "budget_used_rate",
    "cost": "total_cost",
    "revenue": "attributed_revenue",
}
#: KPIs that are rates (shown as percentages).
RATE_KPIS = frozenset({"redemption_rate", "conversion_rate", "click_rate", "sms_failure_rate", "failure_rate",
                       "budget_spent", "roi"})
DEFAULT_EVERY = timedelta(days=1)
DEFAULT_TEMPLATE = "alert_notice"
BUILTIN_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class AlertNotify:
    channel: str
    #: ``owner`` (the campaign's owner), ``role`` or ``users``.
    to_kind: str = "owner"
    to: tuple[str, ...] = ()
    template: str = DEFAULT_TEMPLATE
    connector: str | None = None


@dataclass(frozen=True)
class AlertSpec:
    """One published alert: breach when ``kpi`` is below (``direction="below"``)
    or above ``threshold``; checked ``after`` the campaign's start; at most one
    notice per campaign per ``every``."""

    id: str
    title: str
    kpi: str
    direction: str
    threshold: float
    notify: AlertNotify
    after: timedelta = timedelta(0)
    every: timedelta = DEFAULT_EVERY
    min_count: int = 0
    campaigns: tuple[str, ...] = ()
    enabled: bool = True
    title_en: str | None = None
    description: str | None = None
    source: Source | None = None

    def breached(self, value: float | None) -> bool:
        """True when ``value`` is on the wrong side of the threshold (a missing
        value never breaches: no data is not bad data)."""
        if value is None:
            return False
        return value < self.threshold if self.direction == "below" else value > self.threshold


def threshold_value(raw: Any) -> float:
    """``5%`` → 0.05, numbers as they are."""
    if isinstance(raw, str):
        return float(raw.strip().rstrip("%").strip()) / 100.0
    return float(raw)


def build_alert(ctx: Context, d: dict, src: Source) -> AlertSpec:
    """The spec of a schema-valid ``kind: alert`` document."""
    direction = "below" if "below" in d else "above"
    notify = d["notify"]
    to = notify.get("to", "owner")
    names: tuple[str, ...]
    if isinstance(to, dict) and "role" in to:
        to_kind, names = "role", (to["role"],)
    elif isinstance(to, dict):
        to_kind, names = "users", tuple(to["users"])
    else:
        to_kind, names = "owner", ()
    return AlertSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
        kpi=d["kpi"], direction=direction, threshold=threshold_value(d[direction]),
        after=parse_duration(d["after"]) if d.get("after") else timedelta(0),
        every=parse_duration(d["every"]) if d.get("every") else DEFAULT_EVERY,
        min_count=int(d.get("min_count", 0)), campaigns=tuple(d.get("campaigns", ())),
        enabled=d.get("enabled", True),
        notify=AlertNotify(channel=notify["channel"], to_kind=to_kind, to=names,
                           template=notify.get("template", DEFAULT_TEMPLATE), connector=notify.get("connector")),
        source=src,
    )


def check_alert(ctx: Context, d: dict) -> list[Problem]:
    """References an alert makes: its template (which must serve the channel),
    its role, its campaigns and its connector."""
    problems: list[Problem] = []
    notify = d["notify"]
    template_id = notify.get("template", DEFAULT_TEMPLATE)
    template = ctx.get("template", template_id)
    if template is None and template_id not in ctx.ids("template"):
        problems.append(Problem(("notify", "template"), "unknown_ref",
                                unknown("template", template_id, ctx.ids("template"))))
    elif template is not None and notify["channel"] not in template.get("channels", ()):
        problems.append(Problem(("notify", "channel"), "channel",
                                f"template `{template_id}` has no {notify['channel']} version"))
    to = notify.get("to")
    if isinstance(to, dict) and "role" in to and to["role"] not in ctx.ids("role") | BUILTIN_ROLES:
        problems.append(Problem(("notify", "to", "role"), "unknown_ref",
                                unknown("role", to["role"], ctx.ids("role") | BUILTIN_ROLES)))
    for i, campaign in enumerate(d.get("campaigns", ())):
        if campaign not in ctx.ids("campaign"):
            problems.append(Problem(("campaigns", i), "unknown_ref",
                                    unknown("campaign", campaign, ctx.ids("campaign"))))
    if notify.get("connector") and notify["connector"] not in ctx.ids("connector"):
        problems.append(Problem(("notify", "connector"), "unknown_ref",
                                unknown("connector", notify["connector"], ctx.ids("connector"))))
    return problems


__all__ = ["ALERT_KPIS", "KPI_FIELDS", "RATE_KPIS", "AlertNotify", "AlertSpec", "build_alert", "check_alert", "threshold_value"]
