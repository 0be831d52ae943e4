"""数据预警 in the app (issue 14, item 6): ``/alerts`` lists the published
alert rules (what is watched, the condition, how often someone is told) and
the alerts that fired, newest first; both tables export as CSV or Excel.

Checking happens in the scheduler (:func:`alerts_tick`): every running
campaign's KPI snapshot against every enabled alert, notifying through the
alert's connector at most once per campaign and period
(:mod:`engine.alerts.check`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, render_template

from engine.alerts.check import (
    CampaignFacts,
    breaches,
    campaign_started,
    format_kpi,
    notify_breaches,
)
from engine.alerts.spec import KPI_FIELDS, AlertSpec
from engine.storage import alerts_repo

from . import services
from .auth import login_required
from .charts import Column, Table
from .dashboard import export_if_asked, require_reader, table_view
from .i18n import get_locale, label, t
from .i18n_dashboard import MESSAGES as DASHBOARD_MESSAGES

bp = Blueprint("alerts", __name__)

RECENT = 200


def _duration_text(value: timedelta) -> str:
    """``3d`` as 3 天 / 3 d, ``12h`` as 12 小时 / 12 h."""
    zh = get_locale() != "en"
    if value.seconds == 0 and value.days:
        return f"{value.days} 天" if zh else f"{value.days} d"
    hours = value.total_seconds() / 3600
    return f"{hours:g} 小时" if zh else f"{hours:g} h"


def _condition(alert: AlertSpec) -> str:
    value = format_kpi(alert.kpi, alert.threshold)
    return t("alerts_below", v=value) if alert.direction == "below" else t("alerts_above", v=value)


def _notify_text(alert: AlertSpec) -> str:
    channel = t(f"unsub_channel_{alert.notify.channel}")
    if alert.notify.to_kind == "owner":
        who = t("alerts_owner")
    elif alert.notify.to_kind == "role":
        roles = services().registry.current().roles
        role = roles.get(alert.notify.to[0])
        who = t("alerts_role", role=label(role, "title") if role is not None else alert.notify.to[0])
    else:
        who = ", ".join(alert.notify.to)
    return f"{channel} → {who}"


def rules_table() -> Table:
    alerts = sorted(services().registry.current().alerts.values(), key=lambda a: a.id)
    rows = tuple((label(a, "title"), t(f"k_{a.kpi}"), _condition(a),
                  t("alerts_from_start", d=_duration_text(a.after)) if a.after else t("alerts_at_start"),
                  _duration_text(a.every), _notify_text(a), t("yes") if a.enabled else t("no")) for a in alerts)
    return Table("alert_rules", t("alerts_defined"), (
        Column("title", t("alerts_alert")), Column("kpi", t("alerts_kpi")), Column("condition", t("alerts_condition")),
        Column("after", t("alerts_after")), Column("every", t("alerts_every")), Column("notify", t("alerts_notify")),
        Column("enabled", t("alerts_enabled"))), rows, empty=t("alerts_none"), row_keys=tuple(a.id for a in alerts))


def firings_table() -> Table:
    alerts = services().registry.current().alerts
    with services().session_factory() as s:
        rows = alerts_repo.recent_firings(s, limit=RECENT)
    out = []
    for f in rows:
        spec = alerts.get(f.alert_id)
        out.append((f.fired_at, label(spec, "title") if spec is not None else f.alert_id, f.campaign_id,
                    t(f"k_{f.kpi}"), format_kpi(f.kpi, f.value) if f.value is not None else None,
                    format_kpi(f.kpi, f.threshold), f.notified))
    return Table("alert_firings", t("alerts_recent"), (
        Column("fired_at", t("alerts_fired_at"), "datetime"), Column("alert", t("alerts_alert")),
        Column("campaign", t("c_campaign")), Column("kpi", t("alerts_kpi")), Column("value", t("alerts_value")),
        Column("threshold", t("alerts_threshold")), Column("notified", t("alerts_notified"), "int")),
        tuple(out), row_keys=tuple(str(f.id) for f in rows))


@bp.route("/alerts")
@login_required
def index() -> Any:
    require_reader()
    tables = [rules_table(), firings_table()]
    done = export_if_asked(tables, "alerts")
    if done is not None:
        return done
    return render_template("dashboard/alerts.html", tables=[table_view(tb) for tb in tables])


# ------------------------------------------------------------------ the scheduler's part

#: KPI names for notices (the templates are Chinese; the page shows both languages).
NOTICE_LABELS = {key[2:]: pair[0] for key, pair in DASHBOARD_MESSAGES.items() if key.startswith("k_")}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def campaign_facts(row: Any, tz: str) -> CampaignFacts | None:
    """An alert's view of a campaign row from :mod:`web.campaign_source`
    (None for a campaign without a start date: nothing to be "days in")."""
    if row.starts_on is None:
        return None
    numbers = {k: float(v) for k, v in (row.kpis or {}).items() if _is_number(v)}
    for name, field in KPI_FIELDS.items():  # the alert's names for fields the KPI body calls otherwise
        if field in numbers:
            numbers[name] = numbers[field]
    return CampaignFacts(campaign_id=row.id, title=row.title, owner=row.owner, status=row.status,
                         starts_at=campaign_started(row.starts_on, tz), kpis=numbers, counts=numbers)


def with_sms_failures(svc: Any, facts: CampaignFacts) -> CampaignFacts:
    """``facts`` with ``sms_failure_rate`` (failed ÷ written SMS since the
    campaign started) and ``sms_sent``, which the KPI body does not split by channel."""
    from dataclasses import replace

    with svc.session_factory() as s:
        written, failed = alerts_repo.sms_failures(s, facts.campaign_id, facts.starts_at)
    return replace(facts, kpis={**facts.kpis, "sms_failure_rate": failed / written if written else None},
                   counts={**facts.counts, "sms_sent": float(written)})


def alerts_tick(svc: Any) -> Callable[[datetime], Any]:
    """The scheduler's ``alerts`` part: check every enabled alert against every
    running campaign's snapshot and notify new breaches (once per period)."""
    from .campaign_source import source

    def tick(now: datetime) -> Any:
        definitions = svc.registry.current()
        alerts = [a for a in definitions.alerts.values() if a.enabled]
        src = source(svc)
        if not alerts or src is None:
            return None
        facts = [f for f in (campaign_facts(r, svc.tz) for r in src.campaigns(status="running")) if f is not None]
        if any(a.kpi == "sms_failure_rate" for a in alerts):
            facts = [with_sms_failures(svc, f) for f in facts]
        found = breaches(alerts, facts, now=now, tz=svc.tz)
        if not found:
            return None
        return notify_breaches(svc.session_factory, found, now=now, definitions=definitions, tz=svc.tz,
                               base_url=svc.settings.base_url.rstrip("/"), kpi_labels=NOTICE_LABELS)

    return tick
