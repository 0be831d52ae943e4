"""The campaign dashboard pages (issue 14, item 5): ``/dashboard`` (every
campaign's headline KPIs, status and revenue trend), ``/campaigns`` (search,
past campaigns and their retrospectives) and ``/campaigns/<id>`` (funnel,
daily series, cohort heat map, NPS, variants and control, costs, targets, and
the formulas in the page's help).

Why the pages only read: KPIs come from the campaigns engine's snapshots
(:mod:`web.campaign_source`), refreshed incrementally as orders, redemptions
and answers arrive, so a view answers in well under a second however many
orders there are. Every chart's numbers are also an HTML table, and every
table downloads as CSV or Excel with ``?table=<id>&format=csv|xlsx``.

Who: admin, the marketing roles and finance (budgets and ROI), read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from flask import Blueprint, abort, g, render_template, request, url_for

from engine.storage import retrospectives_repo

from . import services
from .access import BadQuery, day_arg
from .auth import login_required
from .campaign_source import source
from .campaign_tables import STATUSES, campaign_page, overview_table, trend_chart
from .charts import Chart, Table, shown_rows
from .i18n import get_locale, t
from .table_export import FORMATS, export_response

bp = Blueprint("dashboard", __name__)

#: Roles that may read the dashboard (admin always may).
DASHBOARD_ROLES = ("marketing", "marketing_manager", "marketing_director", "finance")
#: Longest search text accepted.
MAX_SEARCH = 100


def require_reader() -> None:
    """403 unless the signed-in user may read campaign numbers."""
    if not g.user.has_any(DASHBOARD_ROLES):
        abort(403)


def table_view(table: Table, *, heat: bool = False, export: bool = True, links: Sequence[str] = ()) -> dict[str, Any]:
    """What ``_charts.html`` prints for a table: shown rows and export links."""
    svc = services()
    args = {k: v for k, v in request.args.items() if k not in ("table", "format")}
    view: dict[str, Any] = {"table": table, "heat": heat, "links": list(links),
                            "rows": shown_rows(table, tz=svc.tz, locale=get_locale(), heat=heat)}
    if export:
        base = {**(request.view_args or {}), **args, "table": table.id}
        view["export_csv"] = url_for(request.endpoint or "dashboard.overview", **base, format="csv")
        view["export_xlsx"] = url_for(request.endpoint or "dashboard.overview", **base, format="xlsx")
    return view


def chart_view(chart: Chart, *, export: bool = True) -> dict[str, Any]:
    svc = services()
    return {"blob": chart.blob(tz=svc.tz, locale=get_locale()),
            "table": table_view(chart.table, heat=chart.kind == "heatmap", export=export)}


def export_if_asked(tables: Sequence[Table], stem: str) -> Any:
    """The download asked for with ``?format=`` (and ``?table=``), or None for the page.

    A bad format is a 400 and an unknown table a 404, each with its reason."""
    fmt = request.args.get("format")
    if not fmt:
        return None
    if fmt not in FORMATS:
        abort(400, t("dash_bad_format"))
    table_id = request.args.get("table") or (tables[0].id if len(tables) == 1 else "")
    table = next((tb for tb in tables if tb.id == table_id), None)
    if table is None:
        abort(404, t("dash_unknown_table", table=table_id[:64] or "-"))
    return export_response(table, fmt, tz=services().tz, stem=stem)


def _range() -> tuple[date | None, date | None]:
    try:
        start, end = day_arg(request.args, "from"), day_arg(request.args, "to")
    except BadQuery as exc:
        abort(400, str(exc))
    if start and end and end < start:
        abort(400, "`to` must not be before `from`")
    return start, end


def _search() -> tuple[str | None, str | None]:
    q = (request.args.get("q") or "").strip()[:MAX_SEARCH] or None
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        abort(400, f"`status` must be one of {', '.join(STATUSES)}")
    return q, status


@bp.route("/dashboard")
@login_required
def overview() -> Any:
    require_reader()
    src = source(services())
    rows = src.campaigns() if src is not None else []
    table = overview_table([r.as_dict() for r in rows], t, get_locale())
    done = export_if_asked([table], "dashboard")
    if done is not None:
        return done
    links = [url_for("dashboard.campaign", campaign_id=r.id) for r in rows]
    trends = [chart_view(trend_chart(r.id, r.title_en if get_locale() == 'en' and r.title_en else r.title, r.daily, t), export=False) for r in rows if r.daily]
    return render_template("dashboard/overview.html", overview=table_view(table, links=links), trends=trends,
                           engine_missing=src is None)


@bp.route("/campaigns")
@login_required
def campaigns() -> Any:
    require_reader()
    q, status = _search()
    src = source(services())
    rows = src.campaigns(search=q, status=status) if src is not None else []
    table = overview_table([r.as_dict() for r in rows], t, get_locale())
    with services().session_factory() as s:
        retros = retrospectives_repo.search(s, q, limit=50)
    done = export_if_asked([table], "campaigns")
    if done is not None:
        return done
    links = [url_for("dashboard.campaign", campaign_id=r.id) for r in rows]
    return render_template("dashboard/campaigns.html", listing=table_view(table, links=links), q=q or "",
                           status=status or "", statuses=STATUSES, retros=retros, engine_missing=src is None)


@bp.route("/campaigns/<campaign_id>")
@login_required
def campaign(campaign_id: str) -> Any:
    require_reader()
    start, end = _range()
    src = source(services())
    if src is None:
        abort(404)
    body = src.kpis(campaign_id, start=start, end=end)
    if body is None:
        abort(404)
    page = campaign_page(body, t)
    done = export_if_asked(page.tables, f"campaign-{campaign_id}")
    if done is not None:
        return done
    charted = {c.table.id for c in page.charts}
    with services().session_factory() as s:
        retro = retrospectives_repo.get(s, campaign_id)
    return render_template(
        "dashboard/campaign.html", body=body, campaign=body.get("campaign") or {"id": campaign_id},
        headline=table_view(page.tables[0]), charts=[chart_view(c) for c in page.charts],
        tables=[table_view(tb) for tb in page.tables[1:] if tb.id not in charted],
        start=start, end=end, retro=retro, campaign_id=campaign_id)
