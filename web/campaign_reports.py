"""Weekly reports and retrospectives (issue 14, item 7), run by the scheduler.

* :func:`weekly_report_tick`: once per ISO week (from Monday 09:00 in the
  business time zone), each running campaign's owner gets an e-mail with the
  headline table (HTML and text) and the daily and funnel charts as inline PNG
  images (:mod:`web.report_images`), and a link to the dashboard. The outbox
  key ``report:<campaign>:<week>`` makes it once per week whatever the ticks.
* :func:`retrospective_tick`: a campaign that has ended gets its 复盘 record,
  pre-filled with its KPI body (KPIs and targets against actuals) of that
  moment; the team adds lessons on ``/campaigns/<id>/retrospective``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .campaign_source import source
from .campaign_tables import campaign_page
from .charts import format_cell
from .i18n_dashboard import MESSAGES

#: The report goes out from this local time on Monday.
REPORT_TIME = time(9, 0)
#: Headline rows the report shows, in order (KPI body fields).
REPORT_KPIS = ("sent", "delivered", "coupons_issued", "coupons_redeemed", "redemption_rate", "conversion_rate",
               "attributed_orders", "attributed_revenue", "total_cost", "roi", "nps", "nps_answers")
#: Charts embedded as images.
REPORT_CHARTS = ("daily", "funnel")


def _zh(key: str, *args: Any) -> str:
    """Reports are written in Chinese, like the shipped message templates."""
    pair = MESSAGES.get(key)
    return pair[0] if pair else key


def report_week(now: datetime, tz: str) -> str | None:
    """The ISO week a report is due for at ``now`` (``2025-W10``), or None
    before Monday 09:00 local time."""
    local = now.astimezone(ZoneInfo(tz))
    monday = (local - timedelta(days=local.weekday())).date()
    if local < datetime.combine(monday, REPORT_TIME, tzinfo=ZoneInfo(tz)):
        return None
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def report_context(body: Any, *, tz: str, week: str, url: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The template context of one campaign's report and its inline images."""
    page = campaign_page(body, _zh)
    headline = page.tables[0]
    shown = []
    for key, row, kind in zip(headline.row_keys, headline.rows, headline.row_kinds):
        if key in REPORT_KPIS:
            shown.append({"key": key, "label": row[0], "value": row[1],
                          "text": format_cell(row[1], kind, tz=tz, locale="zh")})
    shown.sort(key=lambda r: REPORT_KPIS.index(r["key"]))
    images = []
    from .report_images import chart_png

    for chart in page.charts:
        if chart.id in REPORT_CHARTS:
            png = chart_png(chart, tz=tz, locale="zh")
            images.append({"cid": f"{chart.id}-{week}@promoflow", "title": chart.table.title,
                           "content_type": "image/png", "data": base64.b64encode(png).decode("ascii")})
    campaign = body.get("campaign") or {}
    context = {"campaign": {"id": campaign.get("id"), "title": campaign.get("title"), "url": url},
               "report": {"week": week, "headline": shown,
                          "images": [{"cid": i["cid"], "title": i["title"]} for i in images]}}
    return context, images


def weekly_report_tick(svc: Any) -> Callable[[datetime], Any]:
    """The scheduler's ``reports`` part (see the module docstring)."""

    def tick(now: datetime) -> Any:
        from engine import outbox
        from engine.storage import outbox_repo, reports_repo, workflows_repo
        from engine.storage.database import transaction
        from engine.storage.events_repo import append_event
        from engine.templates import TemplateRenderError, render

        week = report_week(now, svc.tz)
        src = source(svc)
        if week is None or src is None:
            return None
        definitions = svc.registry.current()
        template = definitions.templates.get("campaign_weekly_report")
        if template is None:
            return None
        queued = 0
        for row in src.campaigns(status="running", with_kpis=False):
            if not row.owner:
                continue
            key = f"report:{row.id}:{week}"
            with transaction(svc.session_factory) as s:
                if reports_repo.report_queued(s, key):
                    continue
                contact = workflows_repo.contacts(s, [row.owner]).get(row.owner)
                if contact is None or not contact.email:
                    append_event(s, "report.notify_failed", "campaign", row.id,
                                 {"campaign": row.id, "to": row.owner, "reason": "no e-mail address"}, now)
                    continue
            body = src.kpis(row.id)
            if body is None:
                continue
            url = f"{svc.settings.base_url.rstrip('/')}/campaigns/{row.id}"
            context, images = report_context(body, tz=svc.tz, week=week, url=url)
            context["recipient"] = {"username": row.owner, "name": contact.display_name or row.owner}
            try:
                with transaction(svc.session_factory) as s:
                    conn = outbox.pick_connector(definitions, "email")
                    item = outbox.OutboxItem(channel="email", to=contact.email, template_id=template.id,
                                             context=context, idempotency_key=key, delivery_class="transactional",
                                             connector=conn.id, extra={"options": {"inline_images": images}})
                    message = render(template, context, channel="email")
                    if outbox_repo.insert_message(s, outbox.row_for(item, message, conn, now, template)) is not None:
                        queued += 1
            except (outbox.OutboxError, TemplateRenderError) as exc:
                with transaction(svc.session_factory) as s:
                    append_event(s, "report.notify_failed", "campaign", row.id,
                                 {"campaign": row.id, "to": row.owner, "reason": str(exc)[:500]}, now)
        return queued or None

    return tick


def retrospective_tick(svc: Any) -> Callable[[datetime], Any]:
    """The scheduler's ``retrospectives`` part: create the 复盘 of each ended
    campaign that has none, pre-filled with its KPI body."""

    def tick(now: datetime) -> Any:
        from engine.storage import retrospectives_repo as repo
        from engine.storage.database import transaction

        src = source(svc)
        if src is None:
            return None
        created = 0
        ended = src.campaigns(status="ended", with_kpis=False)
        with svc.session_factory() as s:
            have = repo.existing_ids(s, [r.id for r in ended])
        for row in ended:
            if row.id in have:
                continue
            body = src.kpis(row.id)
            if body is None:
                continue
            with transaction(svc.session_factory) as s:
                created += repo.create(s, campaign_id=row.id, title=row.title, ended_on=row.ends_on, kpis=body,
                                       now=now)
        return created or None

    return tick


__all__ = ["report_context", "report_week", "retrospective_tick", "weekly_report_tick"]
