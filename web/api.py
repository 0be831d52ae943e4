"""REST API under ``/api/v1``: bearer tokens only (no cookies, so no CSRF).

Status codes: 201 created, 400 malformed JSON or query, 401 no valid token,
403 missing role, 404 unknown form or record, 409 stale version, 413 body
too large, 422 invalid data (``{"errors": [{"field", "code", "message"}]}``).
Any other error is answered as JSON by ``web.errors``.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from flask import Blueprint, Response, current_app, g, request, url_for

from engine.accounts import (
    Principal,
    can_edit_record,
    can_list,
    can_submit,
    can_view_record,
)
from engine.definitions.specs import FormSpec
from engine.forms.errors import ValidationFailed, to_json
from engine.records import (
    Conflict,
    InvalidQuery,
    RecordLocked,
    RecordNotFound,
    RecordView,
    UnknownForm,
)

from . import services
from .access import BadQuery, list_query, published_forms
from .approvals import ACTIONS as TASK_ACTIONS
from .errors import api_error
from .i18n import get_locale
from .openapi import openapi_document
from .uploads import check_refs, stored_refs

bp = Blueprint("api", __name__, url_prefix="/api/v1")

PUBLIC_ENDPOINTS = frozenset({"api.openapi"})


class ApiError(Exception):
    """Raised inside a view to answer with a JSON error."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Any:
    response = api_error(exc.status, exc.message, exc.code)
    if exc.extra:
        body = json.loads(response.get_data())
        body["error"].update(exc.extra)
        response.set_data(json.dumps(body, ensure_ascii=False))
    return response


def json_response(body: Any, status: int = 200, **headers: str) -> Response:
    """``body`` as JSON (UTF-8; ASCII escapes only if some text cannot be encoded)."""
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate echoed from a hostile key
        data = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    response = Response(data, status=status, mimetype="application/json")
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


@bp.before_request
def _authenticate() -> Any:
    request.max_content_length = current_app.config["API_MAX_CONTENT_LENGTH"]
    g.user = None
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return api_error(401, "send `Authorization: Bearer <token>` (create one with `promoflow tokens create`)",
                         "unauthorized")
    user = services().accounts.user_for_token(token.strip(), now=services().now())
    if user is None:
        # Invalid tokens are throttled per address (429 + Retry-After); valid ones never wait for it.
        wait = services().accounts.token_refused(request.remote_addr, now=services().now())
        if wait is not None:
            response = api_error(429, f"too many invalid tokens from this address; retry in {wait} s",
                                 "too_many_attempts")
            response.headers["Retry-After"] = str(wait)
            return response
        response = api_error(401, "the token is invalid or revoked", "invalid_token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="promoflow", error="invalid_token"'
        return response
    g.user = user
    return None


def _user() -> Principal:
    return g.user  # type: ignore[no-any-return]


def _form(form_id: str, version: int | None = None) -> tuple[FormSpec, int]:
    try:
        return services().registry.form(form_id, version)  # type: ignore[no-any-return]
    except UnknownForm:
        raise ApiError(404, f"no published form `{form_id}`") from None


def _body() -> Any:
    """The request body parsed as strict JSON (no NaN/Infinity), or a 400."""
    data = request.get_data(cache=False)  # 413 past the API's size limit
    if not data.strip():
        raise ApiError(400, "the body is empty; send a JSON object")
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8") from None
    except RecursionError:
        raise ApiError(400, "the JSON is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}"[:300]) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _record_json(record: RecordView) -> dict[str, Any]:
    return record.to_json()  # type: ignore[no-any-return]


def _invalid(exc: ValidationFailed) -> Response:
    return json_response({"errors": to_json(exc.errors, get_locale())}, 422)


def _etag(record: RecordView) -> str:
    return f'"{record.version}"'


@bp.post("/forms/<form_id>/records")
def create_record(form_id: str) -> Any:
    spec, _ = _form(form_id)
    user = _user()
    if not can_submit(user, spec):
        raise ApiError(403, f"submitting `{form_id}` needs one of the roles: {', '.join(spec.submit_roles) or 'admin'}")
    payload = _body()
    svc = services()
    try:
        if isinstance(payload, dict):  # the API uploads no files: no reference is one of ours
            check_refs(spec, payload, {})
        record = svc.records.create(form_id, payload, actor=user.username, now=svc.now(), tz=svc.tz)
    except ValidationFailed as exc:
        return _invalid(exc)
    except RecursionError:
        raise ApiError(400, "the JSON is nested too deeply") from None
    return json_response(_record_json(record), 201, Location=url_for("api.get_record", record_id=record.id),
                         ETag=_etag(record))


@bp.get("/forms/<form_id>/records")
def list_records(form_id: str) -> Any:
    spec, _ = _form(form_id)
    user = _user()
    if not can_list(user, spec):
        raise ApiError(403, f"reading `{form_id}` records needs a submit or view role")
    svc = services()
    try:
        query = list_query(spec, request.args, user)
        page = svc.records.list(form_id, where=query.where, created_by=query.created_by, sort=query.sort,
                                page=query.page, per_page=query.per_page, now=svc.now(),
                                search=query.search)
    except (BadQuery, InvalidQuery) as exc:
        raise ApiError(400, str(exc), "bad_query") from None
    return json_response({"items": [_record_json(r) for r in page.items], "total": page.total,
                          "page": page.page, "per_page": page.per_page, "pages": page.pages})


def _visible_record(record_id: int) -> tuple[RecordView, FormSpec]:
    record = services().records.get(record_id)
    if record is None:
        raise ApiError(404, f"no record {record_id}")
    spec, _ = _form(record.form_id, record.form_version)
    if not can_view_record(_user(), spec, record.created_by):
        raise ApiError(403, f"record {record_id} is not yours and you cannot read all `{record.form_id}` records")
    return record, spec


@bp.get("/records/<int:record_id>")
def get_record(record_id: int) -> Any:
    record, _ = _visible_record(record_id)
    return json_response(_record_json(record), ETag=_etag(record))


def _expected_version() -> int | None:
    raw = request.headers.get("If-Match") or request.args.get("version")
    if raw is None or raw.strip() in ("", "*"):
        return None
    text = raw.strip()
    text = text.removeprefix("W/")
    text = text.strip('"')
    if not text.isdigit() or len(text) > 12:
        raise ApiError(400, "If-Match must be a record version such as \"3\"")
    return int(text)


@bp.patch("/records/<int:record_id>")
def update_record(record_id: int) -> Any:
    record, spec = _visible_record(record_id)
    user = _user()
    if not can_edit_record(user, spec, record.created_by):
        raise ApiError(403, f"records of `{record.form_id}` may be changed by: {spec.edit_by}")
    expected = _expected_version()
    payload = _body()
    svc = services()
    try:
        if isinstance(payload, dict):  # only the files this record already holds
            check_refs(spec, payload, stored_refs(spec, record.data))
        updated = svc.records.update(record_id, payload, actor=user.username, now=svc.now(),
                                     expected_version=expected, tz=svc.tz)
    except ValidationFailed as exc:
        return _invalid(exc)
    except Conflict as exc:
        raise ApiError(409, f"record {record_id} changed since version {expected}", "conflict",
                       current_version=exc.current) from None
    except RecordLocked as exc:
        raise ApiError(409, str(exc), "record_locked", record_status=exc.status, edit_until=exc.until) from None
    except RecordNotFound:
        raise ApiError(404, f"no record {record_id}") from None
    except RecursionError:
        raise ApiError(400, "the JSON is nested too deeply") from None
    return json_response(_record_json(updated), ETag=_etag(updated))


@bp.get("/records/<int:record_id>/files/<field>/<file_id>")
def download_file(record_id: int, field: str, file_id: str) -> Any:
    """An uploaded file of a record (same rules as the page route: readers,
    the submitter, approvers with a task on it; anyone else gets a 404)."""
    from .records import file_response

    record = services().records.get(record_id)
    if record is None:
        raise ApiError(404, f"no record {record_id}")
    spec, _ = _form(record.form_id, record.form_version)
    user = _user()
    wf = services().workflows
    if not can_view_record(user, spec, record.created_by) and not (
            wf is not None and wf.involved(record.id, user.username)):
        raise ApiError(404, f"no record {record_id}")
    return file_response(record, spec, field, file_id)


# ------------------------------------------------------------------ approval tasks

def _workflows() -> Any:
    from .approvals import workflows

    wf = workflows()
    if wf is None:
        raise ApiError(404, "approvals are not enabled")
    return wf


@bp.get("/tasks")
def list_tasks() -> Any:
    """The caller's tasks (``?status=open|done|all``, ``?form=``), overdue first, with counts."""
    from .approvals import TASK_FILTERS, task_json

    wf = _workflows()
    status = request.args.get("status", TASK_FILTERS[0])
    if status not in TASK_FILTERS:
        raise ApiError(400, f"`status` is one of: {', '.join(TASK_FILTERS)}", "bad_query")
    form_id = request.args.get("form") or None
    user = _user()
    now = services().now()
    tasks = wf.tasks_for(user.username, status=status, overdue_first=True, form_id=form_id, now=now)
    from .followups import api_list  # rules' follow-up tasks (no form: left out by a form filter)

    return json_response({"items": [task_json(task) for task in tasks],
                          "counts": wf.task_counts(user.username, now=now),
                          "followups": [] if form_id else api_list(user.username, status)})


def _action_body() -> tuple[str | None, str | None, int | None]:
    """``comment``, ``target`` and ``version`` from an optional JSON object body."""
    from .approvals import MAX_COMMENT

    body = _body() if request.get_data(cache=True).strip() else {}
    if not isinstance(body, dict):
        raise ApiError(400, 'the body must be a JSON object such as {"comment": "…"}')
    unknown = sorted(set(body) - {"comment", "target", "version"})
    if unknown:
        raise ApiError(400, f"unknown key `{unknown[0][:64]}`; send comment, target, version")
    comment, target, version = body.get("comment"), body.get("target"), body.get("version")
    if comment is not None and not isinstance(comment, str):
        raise ApiError(400, "`comment` must be a string")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ApiError(400, f"`comment` may be at most {MAX_COMMENT} characters")
    if target is not None and (not isinstance(target, str) or not target.strip() or len(target) > 128):
        raise ApiError(400, "`target` must be a user name")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ApiError(400, "`version` must be the task's version, a whole number")
    return comment, target, version


@bp.post("/tasks/bulk")
def act_on_tasks() -> Any:
    """批量审批: approve (or reject) many of your open tasks in one request:
    ``{"task_ids": [..], "action": "approve" | "reject", "comment": "…"}``.
    One transaction; each task is its own transition, and a task that cannot
    be acted on is reported in its result without undoing the others."""
    from .approvals import BULK_ACTIONS, MAX_COMMENT

    wf = _workflows()
    body = _body()
    if not isinstance(body, dict):
        raise ApiError(400, 'send {"task_ids": [1, 2], "action": "approve"}')
    unknown = sorted(set(body) - {"task_ids", "action", "comment"})
    if unknown:
        raise ApiError(400, f"unknown key `{unknown[0][:64]}`; send task_ids, action, comment")
    ids, action, comment = body.get("task_ids"), body.get("action", "approve"), body.get("comment")
    if (not isinstance(ids, list) or not ids
            or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)):
        raise ApiError(400, "`task_ids` must be a non-empty list of task ids")
    if len(ids) > wf.BULK_LIMIT:
        raise ApiError(400, f"at most {wf.BULK_LIMIT} tasks per request")
    if action not in BULK_ACTIONS:
        raise ApiError(400, f"`action` must be {' or '.join(BULK_ACTIONS)}")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise ApiError(400, f"`comment` must be a string of at most {MAX_COMMENT} characters")
    results = wf.act_many(ids, actor=_user().username, action=action, comment=comment, now=services().now())
    return json_response({"results": [r.to_json() for r in results], "done": sum(1 for r in results if r.ok),
                          "failed": sum(1 for r in results if not r.ok)})


@bp.post(f"/tasks/<int:task_id>/<any({', '.join(TASK_ACTIONS)}):action>")
def act_on_task(task_id: int, action: str) -> Any:
    """Approve, reject, return, transfer (``target``), add an approver (``target``) or comment.

    200 with the instance state; 403 not assigned; 404 unknown task; 409 the
    task is closed or changed since ``version`` (``error.current``: the state).
    """
    from .approvals import TaskError, act, instance_json

    _workflows()
    comment, target, version = _action_body()
    try:
        instance = act(task_id, action, user=_user(), comment=comment, target=target, expected_version=version)
    except TaskError as exc:
        if exc.code == "reason_required":  # a field error, like any invalid body
            return json_response({"errors": [{"field": "comment", "code": "required", "message": exc.message}]}, 422)
        extra = {"current": instance_json(exc.current)} if exc.current is not None else {}
        raise ApiError(exc.status, exc.message, exc.code, **extra) from None
    return json_response(instance_json(instance))


@bp.get("/records/<int:record_id>/workflow")
def record_workflow(record_id: int) -> Any:
    """The record's approval instance: status, current steps, tasks and history."""
    from .approvals import instance_json, value

    wf = _workflows()
    record = services().records.get(record_id)
    if record is None:
        raise ApiError(404, f"no record {record_id}")
    instance = wf.instance_for_record(record_id, now=services().now())
    spec, _ = _form(record.form_id, record.form_version)
    user = _user()
    involved = instance is not None and any(value(task, "assignee") == user.username
                                            for task in value(instance, "tasks", None) or ())
    if not (can_view_record(user, spec, record.created_by) or involved):
        raise ApiError(403, f"record {record_id} is not yours and you cannot read all `{record.form_id}` records")
    if instance is None:
        raise ApiError(404, f"record {record_id} has no workflow")
    return json_response(instance_json(instance))


@bp.get("/openapi.json")
def openapi() -> Any:
    try:
        app_version = package_version("promoflow")
    except PackageNotFoundError:  # pragma: no cover - running from an uninstalled checkout
        app_version = "0"
    doc = openapi_document(published_forms(), server_url=request.url_root.rstrip("/") + (bp.url_prefix or ""),
                           version=app_version)
    return json_response(doc)


__all__ = ["bp", "json_response"]
