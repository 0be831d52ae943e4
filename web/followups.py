"""Follow-up tasks that rules create (``create_task``, :mod:`engine.rule_tasks`)
in the web app: the task page and its done form (``/tasks/<id>`` shares the
approval tasks' id space: :func:`page` is called from the inbox's task view),
the inbox section, the customer page panel, and the API's
``POST /api/v1/tasks/<id>/done``. Also the scheduler's part: the reminders
and escalations of rule tasks (:func:`tick`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from engine.rule_tasks import MAX_COMMENT, RuleTaskError, RuleTaskService, RuleTaskView, TickReport

from . import services
from .auth import login_required
from .i18n import get_locale, t

bp = Blueprint("followups", __name__)
api_bp = Blueprint("followups_api", __name__, url_prefix="/api/v1")
EXTENSION = "promoflow.rule_tasks"
#: Roles that may read any follow-up task (as they may read customers); the assignee always may.
READER_ROLES = ("marketing", "marketing_manager", "marketing_director", "account_manager", "store_manager")


def rule_tasks(app: Any = None) -> RuleTaskService:
    """The app's RuleTaskService (made on first use)."""
    app = app or current_app
    found = app.extensions.get(EXTENSION)
    if found is None:
        svc = app.extensions["promoflow"]
        found = app.extensions[EXTENSION] = RuleTaskService(
            svc.session_factory, svc.registry.current, base_url=svc.settings.base_url, tz=svc.settings.timezone)
    return found  # type: ignore[no-any-return]


def tick(services_: Any) -> Any:
    """The scheduler's tick of rule tasks (web/worker.py), beside the approvals'."""
    svc = RuleTaskService(services_.session_factory, services_.registry.current,
                          base_url=services_.settings.base_url, tz=services_.settings.timezone)

    def run(now: datetime) -> TickReport:
        return svc.tick(now)

    return run


# ------------------------------------------------------------------ labels

def status_label(status: str | None) -> str:
    return t(f"fu_status_{status}") if status in ("open", "done", "cancelled") else (status or "")


def outcome_label(task: RuleTaskView) -> str:
    return task.outcome_label(get_locale()) or ""


def outcome_choices(task: RuleTaskView) -> list[tuple[str, str]]:
    locale = get_locale()
    return [(o.id, o.label_en if locale == "en" and o.label_en else o.label) for o in task.outcomes]


def task_title(task: RuleTaskView) -> str:
    return task.title_en if get_locale() == "en" and task.title_en else task.title


def duration(seconds: int | None) -> str:
    """A response time as people read it: 2天3小时, 5小时12分, 40分钟."""
    if seconds is None:
        return ""
    minutes = seconds // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return t("fu_duration_days", d=days, h=hours)
    if hours:
        return t("fu_duration_hours", h=hours, m=mins)
    return t("fu_duration_minutes", m=mins)


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"customer_followups": _for_customer, "inbox_followups": _for_inbox, "fu_status": status_label,
            "fu_outcome": outcome_label, "fu_duration": duration, "fu_title": task_title}


def _for_customer(customer_id: int) -> list[RuleTaskView]:
    return rule_tasks().for_customer(customer_id, now=services().now())


def _for_inbox(status: str) -> list[RuleTaskView]:
    user = g.get("user")
    if user is None:
        return []
    return rule_tasks().tasks_for(user.username, status=status, now=services().now(), limit=200)


# ------------------------------------------------------------------ the task page

def _may_read(task: RuleTaskView) -> bool:
    user = g.user
    return task.assignee == user.username or user.has_any(READER_ROLES)


def page(task_id: int) -> Any | None:
    """The page of rule task ``task_id``, or None when no rule task has that id
    (then it is an approval task's page)."""
    task = rule_tasks().get(task_id, now=services().now()) if 0 < task_id < 2**62 else None
    if task is None:
        return None
    if not _may_read(task):
        abort(403)
    return _render(task)


def _render(task: RuleTaskView, *, status_code: int = 200, error: str | None = None, outcome: str = "",
            comment: str = "") -> Any:
    return render_template("followup.html", task=task, is_open=task.status == "open",
                           mine=task.assignee == g.user.username, outcomes=outcome_choices(task), error=error,
                           chosen=outcome, comment=comment, max_comment=MAX_COMMENT), status_code


@bp.route("/tasks/<int:task_id>/done", methods=["POST"])
@login_required
def done(task_id: int) -> Any:
    """The done form: an outcome and a comment (CSRF-protected)."""
    svc = rule_tasks()
    outcome = request.form.get("outcome", "")
    comment = request.form.get("comment", "")
    version = request.form.get("version", "")
    try:
        task = svc.done(task_id, actor=g.user.username, outcome=outcome, comment=comment, now=services().now(),
                        expected_version=int(version) if version.isdigit() else None)
    except RuleTaskError as exc:
        current = svc.get(task_id, now=services().now())
        if current is None:
            abort(404)
        if exc.status == 403:
            abort(403)
        message = {"outcome": t("fu_bad_outcome"), "comment": t("fu_bad_comment", n=MAX_COMMENT)}.get(
            exc.field or "", t("fu_stale") if exc.code == "stale_task" else
            t("fu_closed", status=status_label(current.status)))
        return _render(current, status_code=exc.status, error=message, outcome=outcome, comment=comment)
    flash(t("fu_done_flash", outcome=outcome_label(task)), "success")
    return redirect(url_for("inbox.inbox"))


# ------------------------------------------------------------------ API

@api_bp.before_request
def _authenticate() -> Any:
    from . import api

    return api._authenticate()


@api_bp.errorhandler(RuleTaskError)
def _refused(exc: RuleTaskError) -> Any:
    from .api import json_response
    from .errors import api_error

    if exc.status == 422:
        return json_response({"errors": [{"field": exc.field, "code": exc.code, "message": exc.message}]}, 422)
    return api_error(exc.status, exc.message, exc.code)


@api_bp.post("/tasks/<int:task_id>/done")
def api_done(task_id: int) -> Any:
    """Mark a follow-up task done: ``{"outcome": "contacted", "comment": "…", "version": 1}``."""
    from .api import json_response

    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return json_response({"errors": [{"field": "", "code": "invalid_json",
                                          "message": 'send a JSON object such as {"outcome": "contacted"}'}]}, 422)
    unknown = sorted(set(body) - {"outcome", "comment", "version"})
    if unknown:
        return json_response({"errors": [{"field": str(k)[:64], "code": "unknown_field",
                                          "message": "send outcome, comment, version"} for k in unknown]}, 422)
    version = body.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        return json_response({"errors": [{"field": "version", "code": "invalid_type",
                                          "message": "`version` must be the task's version, a whole number"}]}, 422)
    task = rule_tasks().done(task_id, actor=g.user.username, outcome=body.get("outcome"),
                             comment=body.get("comment"), now=services().now(), expected_version=version)
    return json_response(task.to_json())


def api_list(username: str, status: str) -> list[dict[str, Any]]:
    """The caller's follow-up tasks for ``GET /api/v1/tasks`` (key ``followups``)."""
    return [task.to_json() for task in rule_tasks().tasks_for(username, status=status, now=services().now())]


__all__ = ["api_bp", "bp", "page", "rule_tasks", "tick"]
