"""Checking alerts against campaign KPIs, and notifying once per period.

Why split in two: :func:`breaches` is pure (alerts, facts and ``now`` in,
breaches out) so every edge — "three days in", the minimum sample, a missing
KPI — is tested without a database; :func:`notify_breaches` records each breach
in ``alert_firings`` (unique per alert, campaign and period) and queues the
notices in the same transaction, so a breach seen by two ticks or two
schedulers notifies once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from engine.alerts.spec import ALERT_KPIS, RATE_KPIS, AlertSpec

_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class CampaignFacts:
    """What an alert needs of one campaign: identity, owner, when it started
    (aware), status, its headline KPIs and the counts behind them."""

    campaign_id: str
    title: str
    starts_at: datetime
    status: str = "running"
    owner: str | None = None
    kpis: Mapping[str, float | None] = field(default_factory=dict)
    counts: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Breach:
    alert: AlertSpec
    campaign: CampaignFacts
    value: float
    period_key: str


def period_key(now: datetime, every: timedelta, tz: str) -> str:
    """The period ``now`` falls in: local wall time (business zone) divided
    into ``every``-long slices from 1970-01-01 00:00, so daily periods start at
    local midnight."""
    local = now.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
    seconds = max(1, int(every.total_seconds()))
    return str(int((local - _EPOCH).total_seconds()) // seconds)


def breaches(alerts: Iterable[AlertSpec], campaigns: Iterable[CampaignFacts], *, now: datetime,
             tz: str) -> list[Breach]:
    """Every (alert, running campaign) whose KPI is on the wrong side of the
    threshold at ``now``. A campaign younger than the alert's ``after``, with
    fewer than ``min_count`` behind the KPI, or without the KPI is skipped."""
    facts = [c for c in campaigns if c.status == "running"]
    out: list[Breach] = []
    for alert in alerts:
        if not alert.enabled:
            continue
        for campaign in facts:
            if alert.campaigns and campaign.campaign_id not in alert.campaigns:
                continue
            if now - campaign.starts_at < alert.after:
                continue
            if alert.min_count and float(campaign.counts.get(ALERT_KPIS[alert.kpi], 0) or 0) < alert.min_count:
                continue
            value = campaign.kpis.get(alert.kpi)
            if value is None or not alert.breached(float(value)):
                continue
            out.append(Breach(alert, campaign, float(value), period_key(now, alert.every, tz)))
    return out


def format_kpi(kpi: str, value: float) -> str:
    """A KPI value as a notice shows it: rates as percentages, NPS with one decimal, money in yuan."""
    if kpi in RATE_KPIS:
        return f"{value * 100:.1f}%"
    if kpi == "nps":
        return f"{value:.1f}"
    return f"{value:,.2f}"


@dataclass(frozen=True)
class NotifyResult:
    fired: int = 0
    already: int = 0
    queued: int = 0
    failed: tuple[str, ...] = ()


def notify_breaches(session_factory: Any, found: Sequence[Breach], *, now: datetime, definitions: Any, tz: str,
                    base_url: str, kpi_labels: Mapping[str, str],
                    campaign_url: Callable[[str], str] | None = None) -> NotifyResult:
    """Record each breach once per period and queue its notices (one
    transaction per breach). Recipients: the campaign's owner, a role's
    active users or named users; a recipient without an address for the
    channel is reported as an ``alert.notify_failed`` event."""
    from engine import outbox
    from engine.storage import alerts_repo, workflows_repo
    from engine.storage.database import transaction
    from engine.storage.events_repo import append_event
    from engine.templates import TemplateRenderError

    fired = already = queued = 0
    failed: list[str] = []
    local_now = now.astimezone(ZoneInfo(tz))
    for breach in found:
        alert, campaign = breach.alert, breach.campaign
        with transaction(session_factory) as s:
            firing = alerts_repo.record_firing(s, alert_id=alert.id, campaign_id=campaign.campaign_id,
                                               period_key=breach.period_key, kpi=alert.kpi, value=breach.value,
                                               threshold=alert.threshold, now=now)
            if firing is None:
                already += 1
                continue
            fired += 1
            if alert.notify.to_kind == "owner":
                names = [campaign.owner] if campaign.owner else []
            elif alert.notify.to_kind == "role":
                names = workflows_repo.users_in_role(s, alert.notify.to[0])
            else:
                names = list(alert.notify.to)
            contacts = workflows_repo.contacts(s, names)
            url = campaign_url(campaign.campaign_id) if campaign_url else f"{base_url}/campaigns/{campaign.campaign_id}"
            context = {
                "campaign": {"id": campaign.campaign_id, "title": campaign.title, "url": url},
                "alert": {"id": alert.id, "title": alert.title, "kpi": alert.kpi,
                          "kpi_label": kpi_labels.get(alert.kpi, alert.kpi),
                          "value": breach.value, "value_text": format_kpi(alert.kpi, breach.value),
                          "threshold": alert.threshold, "threshold_text": format_kpi(alert.kpi, alert.threshold),
                          "direction": alert.direction, "direction_text": "低于" if alert.direction == "below" else "高于",
                          "checked_at": local_now.strftime("%Y-%m-%d %H:%M")},
            }
            sent = 0
            recipients: list[str | None] = list(names) or [None]
            for name in recipients:
                contact = contacts.get(name) if name else None
                address = None
                if contact is not None:
                    address = {"email": contact.email, "sms": contact.phone}.get(alert.notify.channel, contact.username)
                if not address:
                    reason = f"no {alert.notify.channel} address for `{name}`" if name else "nobody to notify"
                    failed.append(f"{alert.id}/{campaign.campaign_id}: {reason}")
                    append_event(s, "alert.notify_failed", "alert", alert.id,
                                 {"alert": alert.id, "campaign": campaign.campaign_id, "to": name, "reason": reason},
                                 now)
                    continue
                person = {"username": name, "name": contact.display_name or name if contact else name}
                try:
                    got = outbox.enqueue(s, channel=alert.notify.channel, to=address, template_id=alert.notify.template,
                                         context={**context, "recipient": person}, now=now,
                                         idempotency_key=f"alert:{firing}:{name}", delivery_class="transactional",
                                         connector=alert.notify.connector, definitions=definitions)
                except (outbox.OutboxError, TemplateRenderError) as exc:
                    failed.append(f"{alert.id}/{campaign.campaign_id}: {exc}")
                    append_event(s, "alert.notify_failed", "alert", alert.id,
                                 {"alert": alert.id, "campaign": campaign.campaign_id, "to": name,
                                  "reason": str(exc)[:500]}, now)
                    continue
                if got is not None:
                    sent += 1
            queued += sent
            alerts_repo.set_notified(s, firing, sent)
            append_event(s, "alert.fired", "alert", alert.id,
                         {"alert": alert.id, "campaign": campaign.campaign_id, "kpi": alert.kpi,
                          "value": breach.value, "threshold": alert.threshold, "period": breach.period_key}, now)
    return NotifyResult(fired, already, queued, tuple(failed))


def campaign_started(starts_on: date, tz: str) -> datetime:
    """The aware instant a campaign dated ``starts_on`` begins (local midnight)."""
    return datetime.combine(starts_on, datetime.min.time(), tzinfo=ZoneInfo(tz)).astimezone(UTC)


__all__ = ["Breach", "CampaignFacts", "NotifyResult", "breaches", "campaign_started", "format_kpi",
           "notify_breaches", "period_key"]
