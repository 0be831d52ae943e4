"""复盘 (issue 14, item 7): ``/campaigns/<id>/retrospective``.

When a campaign ends the scheduler creates its retrospective, pre-filled with
the KPIs and targets of that moment (:func:`web.campaign_reports.retrospective_tick`);
the team then writes what went well, what to improve, the lessons and next
actions. The frozen KPIs never change afterwards, so the record says what the
team knew when it wrote the lessons. Saves are guarded by a version (a second
editor gets 409 rather than overwriting). Past retrospectives are searched on
``/campaigns``.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from engine.storage import retrospectives_repo as repo
from engine.storage.database import transaction

from . import services
from .auth import login_required
from .campaign_tables import headline_table, targets_table
from .dashboard import DASHBOARD_ROLES, export_if_asked, table_view
from .i18n import t

bp = Blueprint("retrospectives", __name__)

#: Roles that may write lessons (readers of the dashboard may read them).
EDIT_ROLES = ("marketing", "marketing_manager", "marketing_director")
MAX_TEXT = 5000


@bp.route("/campaigns/<campaign_id>/retrospective", methods=["GET", "POST"])
@login_required
def edit(campaign_id: str) -> Any:
    if not g.user.has_any(DASHBOARD_ROLES):
        abort(403)
    svc = services()
    with svc.session_factory() as s:
        retro = repo.get(s, campaign_id)
    if retro is None:
        if request.method == "POST":
            abort(404)
        return render_template("dashboard/retrospective.html", retro=None, campaign_id=campaign_id), 404
    tables = [headline_table(retro.kpis, t), targets_table(retro.kpis, t)]
    done = export_if_asked(tables, f"retrospective-{campaign_id}")
    if done is not None:
        return done
    can_edit = g.user.has_any(EDIT_ROLES)
    errors: dict[str, str] = {}
    values = dict(retro.lessons)
    status = 200
    if request.method == "POST":
        if not can_edit:
            abort(403)
        values = {k: (request.form.get(k) or "").strip() for k in repo.LESSON_FIELDS}
        errors = {k: t("retro_too_long", n=MAX_TEXT) for k, v in values.items() if len(v) > MAX_TEXT}
        try:
            version = int(request.form.get("version") or "")
        except ValueError:
            abort(400, "`version` must be a whole number")
        if errors:
            status = 422
        else:
            with transaction(svc.session_factory) as s:
                saved = repo.save_lessons(s, campaign_id, values, version=version, by=g.user.username, now=svc.now())
            if saved:
                flash(t("retro_saved"), "success")
                return redirect(url_for("retrospectives.edit", campaign_id=campaign_id))
            flash(t("retro_conflict"), "error")
            status = 409
    return render_template("dashboard/retrospective.html", retro=retro, campaign_id=campaign_id, values=values,
                           errors=errors, can_edit=can_edit, fields=repo.LESSON_FIELDS,
                           tables=[table_view(tb) for tb in tables]), status
