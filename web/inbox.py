"""Approvers' and submitters' pages: the inbox (my tasks, counts, filters),
the task page (record, comment, buttons, timeline, diagram), the actions
(CSRF-protected POSTs), and the submitter's withdraw and edit & resubmit.

The record detail page shows the workflow panel through the
``workflow_panel`` template helper registered here, and the header shows the
open-task badge through ``inbox_open_count``.
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

from engine.accounts import can_edit_record, can_view_record
from engine.approvals import RESUBMITTABLE, ActionError
from engine.definitions.specs import FormSpec
from engine.forms.coerce import coerce_form_data
from engine.forms.errors import ValidationFailed
from engine.records import RecordView, UnknownForm

from . import services
from .approvals import (
    ACTIONS,
    MAX_COMMENT,
    REASON_ACTIONS,
    TARGET_ACTIONS,
    TASK_FILTERS,
    TaskError,
    act,
    action_label,
    allowed_actions,
    assigned,
    barred_targets_for,
    current_steps,
    diagram,
    display_name,
    find_task,
    may_withdraw,
    outcome_message,
    status_label,
    step_title,
    task_status_label,
    timeline,
    value,
    workflow_spec,
    workflows,
)
from .auth import login_required
from .i18n import label, t

bp = Blueprint("inbox", __name__)

#: Most tasks one inbox page lists.
INBOX_LIMIT = 200


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"inbox_open_count": _open_count, "workflow_panel": _workflow_panel,
            "wf_status_label": status_label, "task_status_label": task_status_label,
            "wf_action_label": action_label}


def _open_count() -> int | None:
    """Open tasks of the signed-in user, for the header badge (None: no badge)."""
    user = g.get("user")
    wf = workflows()
    if user is None or wf is None:
        return None
    if "_pf_open_count" not in g:
        g._pf_open_count = int(wf.task_counts(user.username, now=services().now()).get("open", 0))
    return g._pf_open_count  # type: ignore[no-any-return]


def _form_spec(record: RecordView) -> FormSpec | None:
    try:
        spec, _ = services().registry.form(record.form_id, record.form_version)
    except UnknownForm:
        return None
    return spec  # type: ignore[no-any-return]


def _instance_context(instance: Any) -> dict[str, Any]:
    spec = workflow_spec(instance)
    return {
        "instance": instance, "wf_spec": spec, "status": value(instance, "status"),
        "status_text": status_label(value(instance, "status")),
        "workflow_title": (label(spec, "title") if spec is not None else value(instance, "workflow_id")),
        "current": current_steps(instance, spec), "timeline": timeline(instance, spec),
        "svg": diagram(instance),
    }


def _workflow_panel(rec: RecordView) -> dict[str, Any] | None:
    """What the record page shows of the record's workflow, or None when it has none."""
    wf = workflows()
    if wf is None:
        return None
    instance = wf.instance_for_record(rec.id, now=services().now())
    if instance is None:
        return None
    ctx = _instance_context(instance)
    user = g.get("user")
    ctx["may_withdraw"] = may_withdraw(instance, user, rec.created_by)
    ctx["may_resubmit"] = (user is not None and rec.created_by == user.username
                           and ctx["status"] in RESUBMITTABLE)
    # 催办: the submitter's button beside each overdue open task of a running request
    ctx["remindable"] = [
        {"id": value(task, "id"), "assignee": display_name(value(task, "assignee")),
         "step": step_title(ctx.get("wf_spec"), value(task, "step_id"))}
        for task in value(instance, "tasks", None) or ()
        if user is not None and rec.created_by == user.username and ctx["status"] == "running"
        and value(task, "status") == "open" and value(task, "kind", "approval") == "approval"
        and value(task, "overdue")]
    return ctx


# ------------------------------------------------------------------ inbox

@bp.route("/inbox")
@login_required
def inbox() -> Any:
    wf = workflows()
    if wf is None:
        abort(404)
    user = g.user
    status = request.args.get("status") or "open"
    if status not in TASK_FILTERS:
        status = "open"
    published = services().registry.current().forms
    # The filter offers the forms an approval flow is bound to.
    forms = [published[fid] for fid in sorted({w.form for w in services().registry.current().workflows.values()})
             if fid in published]
    form_id = request.args.get("form") or None
    if form_id is not None and form_id not in published:
        form_id = None
    now = services().now()
    tasks = wf.tasks_for(user.username, status=status, overdue_first=True, form_id=form_id, now=now)[:INBOX_LIMIT]
    titles = {f.id: label(f, "title") for f in published.values()}
    rows = []
    records = services().records
    flows = {w.form: w for w in services().registry.current().workflows.values()}
    for task in tasks:
        record = records.get(value(task, "record_id"))
        rows.append({
            "task": task, "record": record, "summary": _summary(record),
            "form_title": titles.get(value(task, "form_id"), value(task, "form_id")),
            "step": step_title(flows.get(value(task, "form_id")), value(task, "step_id"), value(task, "step_title")),
        })
    counts = wf.task_counts(user.username, now=now)
    selectable = any(value(row["task"], "status") == "open" for row in rows)
    return render_template("inbox.html", rows=rows, counts=counts, status=status, form_id=form_id,
                           forms=forms, filters=TASK_FILTERS, selectable=selectable,
                           bulk_limit=wf.BULK_LIMIT, max_comment=MAX_COMMENT)


def _summary(record: RecordView | None) -> str:
    """A short name of the record: its ``name``/``title`` field, else ``#id``."""
    if record is None:
        return ""
    for key in ("name", "title", "subject"):
        text = record.data.get(key)
        if isinstance(text, str) and text:
            return text
    return t("record_n", id=record.id)


# ------------------------------------------------------------------ 批量审批

#: What the inbox may do to many tasks at once (every approval step allows both).
BULK_ACTIONS = ("approve", "reject")
#: Refused task ids the summary lists per reason (then "and k more").
BULK_IDS_SHOWN = 10
#: Refusal codes with a message of their own; others show ``wf_bulk_why_other``.
BULK_REASONS = frozenset({"not_assigned", "task_not_found", "task_closed", "stale_task", "not_running",
                          "not_allowed"})


def _inbox_url(status: str | None, form_id: str | None) -> str:
    """The inbox with the filters the bulk form was posted from."""
    args: dict[str, str] = {}
    if status in TASK_FILTERS and status != "open":
        args["status"] = status
    if form_id and len(form_id) <= 100:
        args["form"] = form_id
    return url_for("inbox.inbox", **args)  # type: ignore[arg-type]  # Flask types **values as bool


def _task_ids(raw: list[str]) -> list[int] | None:
    """The posted task ids, in order and without repeats; None if one is not an id."""
    ids: list[int] = []
    for item in raw:
        text = item.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18 or not 0 < int(text) < 2**62:
            return None
        ids.append(int(text))
    return list(dict.fromkeys(ids))


def _bulk_summary(action: str, results: list[Any]) -> tuple[str, str]:
    """The flash message and category for the results of ``act_many``:
    how many were done, then the refused ones grouped by reason."""
    done = sum(1 for r in results if r.ok)
    refused: dict[str, list[int]] = {}
    for r in results:
        if not r.ok:
            refused.setdefault(r.code or "", []).append(r.task_id)
    text = t(f"wf_bulk_done_{action}", n=done)
    if not refused:
        return text, "success"
    reasons = []
    for code, ids in refused.items():
        reason = t(f"wf_bulk_why_{code}") if code in BULK_REASONS else t("wf_bulk_why_other", code=code or "?")
        shown = t("wf_bulk_id_sep").join(f"#{i}" for i in ids[:BULK_IDS_SHOWN])
        if len(ids) > BULK_IDS_SHOWN:  # the flash travels in the session cookie: keep it short
            shown += t("wf_bulk_more", k=len(ids) - BULK_IDS_SHOWN)
        reasons.append(t("wf_bulk_reason", reason=reason, ids=shown))
    text += t("wf_bulk_refused", m=sum(len(ids) for ids in refused.values()),
              reasons=t("wf_bulk_reason_sep").join(reasons))
    return text, ("info" if done else "error")


@bp.route("/inbox/bulk", methods=["POST"])
@login_required
def bulk_action() -> Any:
    """批量审批 from the inbox: approve or reject the ticked tasks in one
    transaction (``WorkflowService.act_many``); each task the user may not act
    on is refused on its own and reported, the others go through."""
    wf = workflows()
    if wf is None:
        abort(404)
    back = _inbox_url(request.form.get("back_status"), request.form.get("back_form"))
    action = request.form.get("action") or ""
    if action not in BULK_ACTIONS:
        abort(400)
    ids = _task_ids(request.form.getlist("task"))
    if ids is None:
        flash(t("wf_bulk_bad_ids"), "error")
        return redirect(back)
    if not ids:
        flash(t("wf_bulk_none"), "error")
        return redirect(back)
    if len(ids) > wf.BULK_LIMIT:
        flash(t("wf_bulk_too_many", limit=wf.BULK_LIMIT, n=len(ids)), "error")
        return redirect(back)
    comment = (request.form.get("comment") or "").strip()
    if len(comment) > MAX_COMMENT:
        flash(t("wf_comment_too_long", n=MAX_COMMENT), "error")
        return redirect(back)
    try:
        results = wf.act_many(ids, actor=g.user.username, action=action, comment=comment or None,
                              now=services().now())
    except (ValueError, ActionError):  # over the engine's limit, or too many concurrent changes: nothing done
        flash(t("wf_bulk_failed"), "error")
        return redirect(back)
    flash(*_bulk_summary(action, results))
    return redirect(back)


# ------------------------------------------------------------------ task page

def _task_or_404(task_id: int) -> Any:
    task = find_task(task_id)
    if task is None:
        abort(404)
    return task


def _task_page(task: Any, *, status_code: int = 200, comment: str = "", error: str | None = None) -> Any:
    wf = workflows()
    record = services().records.get(value(task, "record_id"))
    if record is None:
        abort(404)
    form = _form_spec(record)
    instance = wf.instance_for_record(record.id, now=services().now())
    ctx = _instance_context(instance) if instance is not None else {}
    spec = ctx.get("wf_spec")
    is_open = value(task, "status") == "open"
    buttons = allowed_actions(spec, value(task, "step_id")) if is_open else []
    users = _user_choices() if any(b in TARGET_ACTIONS for b in buttons) else []
    if users:  # separation of duties: never offer the submitter or someone who already decided
        barred = barred_targets_for(instance, spec, value(task, "step_id"))
        users = [(name, shown) for name, shown in users if name not in barred]
    return render_template(
        "task.html", task=task, rec=record, spec=form, step=step_title(spec, value(task, "step_id"),
                                                                       value(task, "step_title")),
        is_open=is_open, buttons=buttons, users=users, comment=comment, error=error,
        max_comment=MAX_COMMENT, reason_actions=REASON_ACTIONS, **ctx,
    ), status_code


def _user_choices() -> list[tuple[str, str]]:
    """(user name, display name) of every active user but the signed-in one."""
    from sqlalchemy import select

    from engine.storage.models import User

    with services().session_factory() as session:
        rows = session.execute(select(User.username, User.display_name).where(User.active.is_(True))
                               .order_by(User.username)).all()
    return [(name, shown or name) for name, shown in rows if name != g.user.username]


@bp.route("/tasks/<int:task_id>")
@login_required
def task(task_id: int) -> Any:
    from .followups import page

    followup = page(task_id)  # a rule's follow-up task shares the id space
    if followup is not None:
        return followup
    task = _task_or_404(task_id)
    if not assigned(task, g.user):
        abort(403)
    return _task_page(task)


@bp.route("/tasks/<int:task_id>/<action>", methods=["POST"])
@login_required
def task_action(task_id: int, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    task = _task_or_404(task_id)
    comment = (request.form.get("comment") or "").strip()
    target = (request.form.get("target") or "").strip() or None
    if len(comment) > MAX_COMMENT:
        return _task_page(task, status_code=422, comment=comment[:MAX_COMMENT],
                          error=t("wf_comment_too_long", n=MAX_COMMENT))
    raw_version = request.form.get("version") or ""
    expected = int(raw_version) if raw_version.isascii() and raw_version.isdigit() and len(raw_version) < 12 else None
    try:
        done = act(task_id, action, user=g.user, comment=comment, target=target, expected_version=expected)
    except TaskError as exc:
        if exc.status == 403:
            abort(403)
        if exc.status == 404:
            abort(404)
        if exc.status == 409:
            return _conflict_page(task_id, exc)
        return _task_page(task, status_code=422, comment=comment, error=exc.message)
    flash(outcome_message(action, done), "success")
    if action == "comment":
        return redirect(url_for("inbox.task", task_id=task_id))
    return redirect(url_for("inbox.inbox"))


def _conflict_page(task_id: int, exc: TaskError) -> Any:
    task = find_task(task_id)
    record_id = value(task, "record_id") if task is not None else value(exc.current, "record_id")
    instance = exc.current
    if instance is None and record_id is not None:
        instance = workflows().instance_for_record(record_id, now=services().now())
    ctx = _instance_context(instance) if instance is not None else {}
    rec = services().records.get(record_id) if record_id is not None else None
    return render_template("task_closed.html", task=task, rec=rec, code=exc.code, **ctx), 409


# ------------------------------------------------------------------ submitter

def _own_record(record_id: int) -> tuple[RecordView, FormSpec]:
    record = services().records.get(record_id)
    if record is None:
        abort(404)
    form = _form_spec(record)
    if form is None or not can_view_record(g.user, form, record.created_by):
        abort(404)
    if record.created_by != g.user.username:
        abort(403)
    return record, form


@bp.route("/records/<int:record_id>/withdraw", methods=["POST"])
@login_required
def withdraw(record_id: int) -> Any:
    record, _ = _own_record(record_id)
    wf = workflows()
    instance = wf.instance_for_record(record.id, now=services().now()) if wf is not None else None
    if instance is None:
        abort(404)
    try:
        wf.withdraw(record.id, actor=g.user.username, now=services().now())
    except ActionError as exc:
        if exc.code in ("not_submitter", "not_assigned"):
            abort(403)
        flash(t("wf_cannot_withdraw"), "error")
        return redirect(url_for("records.detail", record_id=record.id))
    flash(t("wf_done_withdraw"), "success")
    return redirect(url_for("records.detail", record_id=record.id))


@bp.route("/records/<int:record_id>/remind/<int:task_id>", methods=["POST"])
@login_required
def remind(record_id: int, task_id: int) -> Any:
    """催办: the submitter sends the overdue approver the flow's reminder notice (once an hour per task)."""
    record, _ = _own_record(record_id)
    wf = workflows()
    if wf is None:
        abort(404)
    try:
        wf.remind(record.id, task_id, actor=g.user.username, now=services().now())
    except ActionError as exc:
        if exc.code == "not_submitter":
            abort(403)
        if exc.code == "unknown_task":
            abort(404)
        flash(t("wf_remind_too_soon") if exc.code == "too_soon" else t("wf_cannot_remind"), "error")
        return redirect(url_for("records.detail", record_id=record.id))
    flash(t("wf_done_remind"), "success")
    return redirect(url_for("records.detail", record_id=record.id))


@bp.route("/records/<int:record_id>/resubmit", methods=["GET", "POST"])
@login_required
def resubmit(record_id: int) -> Any:
    from .formbuilder import initial_data
    from .records import form_class, posted_data, refill, render_fill, save_files

    record, form = _own_record(record_id)
    wf = workflows()
    instance = wf.instance_for_record(record.id, now=services().now()) if wf is not None else None
    if instance is None or value(instance, "status") not in RESUBMITTABLE or not can_edit_record(
            g.user, form, record.created_by):
        abort(409 if instance is not None else 404)
    cls = form_class(form, record.form_version)
    svc = services()
    back = url_for("records.detail", record_id=record.id)
    if request.method == "GET":
        page = cls(data=initial_data(form, record.data, svc.tz))
        return render_fill(form, page, back_url=back,
                            refs={f.key: record.data[f.key] for f in form.fields
                                  if f.type == "file" and isinstance(record.data.get(f.key), dict)})
    data, refs, uploads = posted_data(form, record.data)
    payload = coerce_form_data(form, data)
    for f in form.fields:
        if not f.readonly and f.key not in payload:
            payload[f.key] = None
    try:
        with uploads.kept_on_success():
            save_files(form, payload, uploads, record.data)
            wf.resubmit(record.id, payload, actor=g.user.username, now=svc.now())
    except ValidationFailed as exc:
        return refill(form, cls, data, exc, refs, back_url=back)
    except ActionError as exc:
        if exc.code in ("not_submitter", "not_assigned"):
            abort(403)
        flash(t("wf_cannot_resubmit"), "error")
        return redirect(back)
    flash(t("wf_done_resubmit"), "success")
    return redirect(back)


__all__ = ["bp", "display_name"]
