"""The rules page: each published rule with its trigger in words, next run,
recent days' activity (entered, sent, skipped for consent/caps, deferred for
quiet hours) and a preview (audience, sample, daily forecast as a table and
an inline SVG bar chart). Marketing, marketing managers and admins only.
Nothing here writes: the preview runs in a transaction that is rolled back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, g, render_template, request

from engine.automation.configure import policy_from_settings
from engine.automation.overview import describe_trigger, next_run, recent_activity
from engine.conditions.describe import describe_condition
from engine.automation.preview import Preview, preview_rule
from engine.personal_data import mask

from . import services
from .auth import login_required
from .i18n import get_locale, label

bp = Blueprint("rules", __name__)

#: Roles that may see rules and previews (admin always may).
RULE_ROLES = ("marketing", "marketing_manager")
MAX_DAYS = 31


def _allowed() -> None:
    user = g.get("user")
    if user is None or not user.has_any(RULE_ROLES):
        abort(403)


def _policy(definitions: Any) -> Any:
    svc = services()
    return policy_from_settings(definitions, svc.settings, svc.registry)


@bp.route("/rules")
@login_required
def rules() -> Any:
    _allowed()
    svc = services()
    definitions = svc.registry.current()
    now = svc.now()
    locale = get_locale()
    rows = []
    titles = {k: label(seg, "title") for k, seg in definitions.segments.items()}
    with svc.session_factory() as session:
        for rule in sorted(definitions.rules.values(), key=lambda r: r.id):
            rows.append({
                "rule": rule, "title": label(rule, "title"), "version": svc.registry.version_of("rule", rule.id),
                "trigger": describe_trigger(rule, locale), "next_run": next_run(rule, now),
                "audience": describe_condition(rule.audience, locale, segment_titles=titles)
                if rule.audience is not None else None,
                "activity": recent_activity(session, rule.id, now=now, tz=svc.tz),
            })
    return render_template("rules.html", rows=rows, tz=svc.tz)


def chart(result: Preview, width: int = 560, height: int = 160) -> dict[str, Any]:
    """Bars of the daily forecast (messages per day, stacked by channel) in SVG units."""
    channels = result.channels
    peak = max([d.total for d in result.days] + [1])
    n = max(len(result.days), 1)
    slot = width / n
    bar_w = max(slot * 0.7, 1)
    plot_h = height - 20
    bars = []
    for i, day in enumerate(result.days):
        y = float(plot_h)
        for c in channels:
            count = day.messages.get(c, 0)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            bars.append({"x": round(i * slot + (slot - bar_w) / 2, 1), "y": round(y, 1), "w": round(bar_w, 1),
                         "h": round(h, 1), "channel": c, "count": count, "day": day.day.isoformat()})
    labels = [{"x": round(i * slot + slot / 2, 1), "text": d.day.strftime("%m-%d")} for i, d in enumerate(result.days)]
    return {"width": width, "height": height, "plot_h": plot_h, "bars": bars, "labels": labels, "peak": peak,
            "channels": channels}


@bp.route("/rules/<rule_id>/preview")
@login_required
def preview(rule_id: str) -> Any:
    _allowed()
    svc = services()
    definitions = svc.registry.current()
    rule = definitions.rules.get(rule_id)
    if rule is None:
        abort(404)
    try:
        days = max(0, min(int(request.args.get("days", 7)), MAX_DAYS))
    except ValueError:
        days = 7
    result = preview_rule(svc.session_factory, rule.id, now=svc.now(), definitions=definitions, days=days,
                          policy=_policy(definitions), sms_price=Decimal(str(svc.settings.sms_price)))
    return render_template("rule_preview.html", rule=rule, title=label(rule, "title"), result=result,
                           chart=chart(result), days=days, max_days=MAX_DAYS, tz=svc.tz,
                           mask=mask)  # the sample is masked for every role (issue 16)
