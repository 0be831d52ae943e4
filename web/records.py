"""The staff pages: home, the form fill page, record list (filters, sort,
pages, CSV export), record detail and edit."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    stream_with_context,
    url_for,
)
from werkzeug.datastructures import MultiDict

from engine.accounts import (
    can_edit_record,
    can_list,
    can_submit,
    can_view_all,
    can_view_record,
)
from engine.definitions.specs import FormSpec
from engine.forms.coerce import coerce_form_data
from engine.forms.errors import ValidationFailed
from engine.forms.types import Env
from engine.forms.validate import default_value
from engine.records import (
    Conflict,
    InvalidQuery,
    RecordLocked,
    RecordNotFound,
    RecordView,
    UnknownForm,
    editable,
)

from . import services
from .access import (
    BadQuery,
    fillable_forms,
    list_query,
    listable_forms,
    local_time,
    show_value,
    store_upload,
)
from .auth import login_required
from .formbuilder import (
    ATTR,
    RecordForm,
    build_form_class,
    condition_data,
    initial_data,
)
from .i18n import get_locale, label, t
from .uploads import Uploads, check_refs, stored_refs

bp = Blueprint("records", __name__)


@bp.app_template_filter("localtime")
def _localtime(value: Any) -> str:
    return local_time(value, services().tz)


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {
        "condition_json": lambda cond: json.dumps(condition_data(cond), ensure_ascii=False),
        "show": lambda f, v: show_value(f, v, get_locale(), services().tz),
    }


def _form(form_id: str, version: int | None = None) -> tuple[FormSpec, int]:
    try:
        return services().registry.form(form_id, version)  # type: ignore[no-any-return]
    except UnknownForm:
        abort(404)


def form_class(spec: FormSpec, version: int) -> type[RecordForm]:
    cache: dict[Any, type[RecordForm]] = current_app.extensions.setdefault("promoflow_form_classes", {})
    key = (spec.id, version, get_locale())
    cls = cache.get(key)
    if cls is None:
        cls = cache[key] = build_form_class(spec, get_locale(), t("choose"))
    return cls


@bp.route("/")
@login_required
def home() -> Any:
    user = g.user
    fillable = fillable_forms(user)
    viewable = [f for f in listable_forms(user) if f not in fillable]
    recent: list[tuple[RecordView, str]] = []
    records = services().records
    for spec in listable_forms(user):
        page = records.list(spec.id, created_by=user.username, sort="-created_at", page=1, per_page=5,
                            now=services().now())
        recent.extend((rec, label(spec, "title")) for rec in page.items)
    recent.sort(key=lambda pair: pair[0].created_at, reverse=True)
    return render_template("home.html", fillable=fillable, viewable=viewable, recent=recent[:10])


#: The form field whose values name the file fields the user cleared (a checkbox beside each kept file).
REMOVE_FILE = "_remove_file"


def posted_data(spec: FormSpec, stored: dict[str, Any] | None = None
                 ) -> tuple[MultiDict[str, Any], dict[str, dict[str, Any]], Uploads]:
    """The posted form data with each uploaded file replaced by its stored
    reference, and the files written for it (see :mod:`web.uploads`). A kept
    file (the hidden input of a re-shown form) is taken only from ``stored``,
    the record's own data; any other reference is left for ``check_refs`` to refuse."""
    data: MultiDict[str, Any] = MultiDict(request.form)
    refs: dict[str, dict[str, Any]] = {}
    uploads = Uploads()
    folder = Path(current_app.config["UPLOAD_FOLDER"])
    held = stored_refs(spec, stored)
    for f in spec.fields:
        if f.type != "file":
            continue
        kept = data.get(f.key)
        if f.key in request.form.getlist(REMOVE_FILE):  # the user took the kept file off
            data.setlist(f.key, [])
            kept = None
        upload = request.files.get(f.key)
        if upload is not None and upload.filename:
            ref = store_upload(f, upload, folder)
            if ref is not None:
                data.setlist(f.key, [json.dumps(ref, ensure_ascii=False)])
                uploads.add(folder / ref["id"] if (folder / ref["id"]).is_file() else None, ref)
        elif kept:
            try:
                ref = json.loads(kept)
            except ValueError:
                ref = None
            if isinstance(ref, dict) and str(ref.get("id")) in held:
                refs[f.key] = held[str(ref["id"])]
    return data, refs, uploads


def save_files(spec: FormSpec, payload: dict[str, Any], uploads: Uploads, stored: dict[str, Any] | None) -> None:
    """Refuse file references that neither this request uploaded nor the record held."""
    check_refs(spec, payload, {**stored_refs(spec, stored), **uploads.refs})


def render_fill(spec: FormSpec, form: RecordForm, *, status: int = 200, leftover: list[str] | None = None,
                 errors: bool = False, refs: dict[str, Any] | None = None, expected_version: int | None = None,
                 back_url: str | None = None) -> Any:
    return render_template(
        "form.html", spec=spec, form=form, form_errors=errors, leftover=leftover or [], file_refs=refs or {},
        expected_version=expected_version, now_iso=services().now().isoformat(),
        back_url=back_url or url_for("records.home"),
    ), status


@bp.route("/forms/<form_id>/new", methods=["GET", "POST"])
@login_required
def fill(form_id: str) -> Any:
    spec, version = _form(form_id)
    if not can_submit(g.user, spec):
        abort(403)
    cls = form_class(spec, version)
    svc = services()
    if request.method == "GET":
        env = Env(now=svc.now(), tz=svc.tz, user=g.user.username)
        defaults = {f.key: default_value(f, env) for f in spec.fields if f.default is not None}
        form = cls(data=initial_data(spec, {k: v for k, v in defaults.items() if v is not None}, svc.tz))
        return render_fill(spec, form)
    data, refs, uploads = posted_data(spec)
    payload = coerce_form_data(spec, data)
    try:
        with uploads.kept_on_success():
            save_files(spec, payload, uploads, None)
            record = svc.records.create(form_id, payload, actor=g.user.username, now=svc.now(), tz=svc.tz)
    except ValidationFailed as exc:
        return refill(spec, cls, data, exc, refs)
    flash(t("submitted", id=record.id), "success")
    return redirect(url_for("records.detail", record_id=record.id))


def refill(spec: FormSpec, cls: type[RecordForm], data: MultiDict[str, Any], exc: ValidationFailed,
            refs: dict[str, Any], **extra: Any) -> Any:
    from .formbuilder import apply_errors

    # Re-display what was typed: WTForms keeps each field's raw text.
    shown = MultiDict([(k, v) for k, v in data.items(multi=True) if not _is_file_key(spec, k)])
    form = cls(formdata=shown)
    leftover = apply_errors(form, exc.errors, get_locale())
    # A file that broke its field's rules was never stored: offer a new upload, not "已上传".
    refused = {e.field.split(".", 1)[0].split("[", 1)[0] for e in exc.errors if e.field}
    kept = {key: ref for key, ref in refs.items() if key not in refused}
    return render_fill(spec, form, status=422, leftover=leftover, errors=True, refs=kept, **extra)


def _is_file_key(spec: FormSpec, key: str) -> bool:
    return any(f.type == "file" and f.key == key for f in spec.fields)


def _record_or_404(record_id: int) -> tuple[RecordView, FormSpec]:
    record = services().records.get(record_id)
    if record is None:
        abort(404)
    spec, _ = _form(record.form_id, record.form_version)
    if not can_view_record(g.user, spec, record.created_by):
        abort(404 if not can_list(g.user, spec) else 403)
    return record, spec


#: Messages of the edit lock (``edit.until``), by locale.
_LOCKED = {
    "workflow_started": ("审批流程已开始，此记录不能再修改", "The approval flow has started; this record can no longer be changed"),
    "workflow_finished": ("审批流程已结束，此记录不能再修改", "The approval flow has finished; this record can no longer be changed"),
}


def locked_message(until: str) -> str:
    """Why a record cannot be changed any more, in the request's locale."""
    pair = _LOCKED.get(until, _LOCKED["workflow_started"])
    return pair[1 if get_locale() == "en" else 0]


def _locked_page(until: str) -> Any:
    """409: the record's state, not the user's rights, forbids the change."""
    title = "Cannot be changed" if get_locale() == "en" else "不能修改"
    return render_template("error.html", status=409, title=title, text=locked_message(until)), 409


@bp.route("/records/<int:record_id>")
@login_required
def detail(record_id: int) -> Any:
    record, spec = _record_or_404(record_id)
    may_edit = can_edit_record(g.user, spec, record.created_by)
    locked = may_edit and not editable(spec, record.status)
    return render_template("detail.html", rec=record, spec=spec, creator=record.created_by or "",
                           may_edit=may_edit and not locked, locked_note=locked_message(spec.edit_until) if locked else "")


@bp.route("/records/<int:record_id>/edit", methods=["GET", "POST"])
@login_required
def edit(record_id: int) -> Any:
    record, spec = _record_or_404(record_id)
    if not can_edit_record(g.user, spec, record.created_by):
        abort(403)
    if not editable(spec, record.status):
        return _locked_page(spec.edit_until)
    cls = form_class(spec, record.form_version)
    svc = services()
    back = url_for("records.detail", record_id=record.id)
    if request.method == "GET":
        form = cls(data=initial_data(spec, record.data, svc.tz))
        return render_fill(spec, form, expected_version=record.version, back_url=back,
                            refs={f.key: record.data[f.key] for f in spec.fields
                                  if f.type == "file" and isinstance(record.data.get(f.key), dict)})
    data, refs, uploads = posted_data(spec, record.data)
    payload = coerce_form_data(spec, data)
    # Every editable field is on the page: a field left out means "cleared".
    for f in spec.fields:
        if not f.readonly and f.key not in payload:
            payload[f.key] = None
    try:
        expected = int(request.form.get("_version", "")) if request.form.get("_version") else None
    except ValueError:
        expected = None
    try:
        with uploads.kept_on_success():
            save_files(spec, payload, uploads, record.data)
            svc.records.update(record_id, payload, actor=g.user.username, now=svc.now(),
                               expected_version=expected, tz=svc.tz)
    except ValidationFailed as exc:
        return refill(spec, cls, data, exc, refs, expected_version=expected, back_url=back)
    except Conflict:
        flash(t("conflict"), "error")
        return redirect(url_for("records.edit", record_id=record_id))
    except RecordLocked as exc:  # a flow started while the page was open
        return _locked_page(exc.until)
    except RecordNotFound:
        abort(404)
    flash(t("updated"), "success")
    return redirect(back)


# ------------------------------------------------------------------ uploaded files

#: A stored file's id as ``store_upload`` makes it: 32 hex digits and an optional
#: short extension. Anything else (``..``, slashes, NUL) never reaches the disk.
_FILE_ID = re.compile(r"[0-9a-f]{32}(\.[a-z0-9]{1,10})?")
#: A media type worth sending as is; anything else goes out as octet-stream.
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def _file_refs(spec: FormSpec, data: dict[str, Any], field: str) -> list[dict[str, Any]]:
    """The file references stored in ``field`` (a file field of the form), top level or in a table's rows."""
    for f in spec.fields:
        if f.type == "file" and f.key == field:
            value = data.get(field)
            items = value if isinstance(value, list) else [value]
            return [i for i in items if isinstance(i, dict)]
        if f.type == "table" and field.startswith(f.key + "."):
            sub = field[len(f.key) + 1:]
            if any(c.type == "file" and c.key == sub for c in f.fields):
                listed = data.get(f.key)
                rows: list[Any] = listed if isinstance(listed, list) else []
                out: list[dict] = []
                for row in rows:
                    value = row.get(sub) if isinstance(row, dict) else None
                    out += [i for i in (value if isinstance(value, list) else [value]) if isinstance(i, dict)]
                return out
    return []


def file_response(record: RecordView, spec: FormSpec, field: str, file_id: str) -> Any:
    """Send a file uploaded into ``record``'s ``field``: only a file that the
    record itself refers to, from the uploads folder and nowhere else, as an
    attachment under its original name (RFC 5987 ``filename*`` for non-ASCII
    names), with its recorded media type and ``nosniff`` so a browser never
    renders an uploaded HTML or SVG file in our origin. The caller has
    checked that the user may see the record; anything else is a 404."""
    if not _FILE_ID.fullmatch(file_id):
        abort(404)
    ref = next((r for r in _file_refs(spec, record.data, field) if r.get("id") == file_id), None)
    if ref is None:
        abort(404)
    folder = Path(current_app.config["UPLOAD_FOLDER"]).resolve()
    path = (folder / file_id).resolve()
    if path.parent != folder or not path.is_file():
        abort(404)
    media = str(ref.get("content_type") or "").split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(media):
        media = "application/octet-stream"
    name = str(ref.get("name") or file_id).replace("\r", " ").replace("\n", " ") or file_id
    response = send_file(path, mimetype=media, as_attachment=True, download_name=name, max_age=0,
                         conditional=True, etag=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/records/<int:record_id>/files/<field>/<file_id>")
@login_required
def download(record_id: int, field: str, file_id: str) -> Any:
    """An uploaded file of a record, for users who may see the record: its
    readers, its submitter, and the approvers who have (had) a task on it."""
    record = services().records.get(record_id)
    if record is None:
        abort(404)
    spec, _ = _form(record.form_id, record.form_version)
    if not can_view_record(g.user, spec, record.created_by) and not _approver_of(record.id):
        abort(404)
    return file_response(record, spec, field, file_id)


def _approver_of(record_id: int) -> bool:
    """Whether the signed-in user has (had) a task on the record's flow: the
    task page shows them the record, so its files too."""
    workflows = services().workflows
    return workflows is not None and workflows.involved(record_id, g.user.username)


def _list_args() -> MultiDict[str, str]:
    return MultiDict([(k, v) for k, v in request.args.items(multi=True) if k != "lang"])


@bp.route("/forms/<form_id>/records")
@login_required
def list_records(form_id: str) -> Any:
    spec, _ = _form(form_id)
    user = g.user
    if not can_list(user, spec):
        abort(403)
    svc = services()
    args = _list_args()
    where_error = None
    try:
        query = list_query(spec, args, user)
        page = svc.records.list(form_id, where=query.where, created_by=query.created_by, sort=query.sort,
                                page=query.page, per_page=query.per_page, now=svc.now(),
                                search=query.search)
    except (BadQuery, InvalidQuery) as exc:
        where_error = t("bad_condition", error=str(exc))
        query = list_query(spec, MultiDict(), user)
        page = svc.records.list(form_id, created_by=query.created_by, now=svc.now())
    pages = max(1, math.ceil(page.total / page.per_page))

    def page_url(number: int) -> str:
        params = [(k, v) for k, v in args.items(multi=True) if k != "page"] + [("page", str(number))]
        return url_for("records.list_records", form_id=form_id) + "?" + urlencode(params)

    columns = [f for f in spec.fields if f.type not in ("table", "textarea", "file")][:6]
    filter_fields = [f for f in spec.fields if f.type == "select" and not f.readonly][:3]
    sort_choices = [("-created_at", t("newest_first")), ("created_at", t("oldest_first"))]
    for f in spec.fields:
        if f.type in ("money", "number", "integer", "date", "datetime"):
            sort_choices += [(f"-{f.key}", f"{label(f)} ↓"), (f.key, f"{label(f)} ↑")]
    export_params = [(k, v) for k, v in args.items(multi=True) if k not in ("page", "per_page")]
    export_url = url_for("records.export", form_id=form_id) + ("?" + urlencode(export_params) if export_params else "")
    return render_template(
        "list.html", spec=spec, page=page, pages=pages, page_no=page.page, page_url=page_url, args=args,
        columns=columns, filter_fields=filter_fields, sort_choices=sort_choices, where_error=where_error,
        view_all=can_view_all(user, spec), may_submit=can_submit(user, spec), export_url=export_url,
    ), (400 if where_error else 200)


@bp.route("/forms/<form_id>/records.csv")
@login_required
def export(form_id: str) -> Any:
    spec, _ = _form(form_id)
    user = g.user
    if not can_list(user, spec):
        abort(403)
    svc = services()
    from .personal_data import NotPermitted, show_full  # phones and e-mails masked unless asked and allowed

    try:
        query = list_query(spec, _list_args(), user)
        lines = svc.records.export_csv(form_id, query.where, locale=get_locale(), created_by=query.created_by,
                                       sort=query.sort, now=svc.now(), search=query.search,
                                       tz=svc.tz, unmasked=show_full("form", form_id, _contact_keys(spec)))
    except (BadQuery, InvalidQuery) as exc:
        abort(400, description=str(exc))
    except NotPermitted:
        abort(403, description=t("pii_no_permission"))
    from engine.audit_log import audit_alone  # exports are audited (issue 16)

    audit_alone(svc.session_factory, now=svc.now(), actor=user.username, action="records.exported", entity_type="form",
                entity_id=form_id, diff={"args": {k: v for k, v in request.args.items()}})
    filename = f"{form_id}-{svc.now().astimezone().strftime('%Y%m%d-%H%M')}.csv"
    return Response(stream_with_context(lines), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _contact_keys(spec: Any) -> list[str]:
    """The form's phone and e-mail fields (also inside sub-tables)."""
    keys = []
    for f in spec.fields:
        keys += [f"{f.key}.{c.key}" for c in (f.fields or ()) if c.type in ("phone", "email")]
        if f.type in ("phone", "email"):
            keys.append(f.key)
    return keys


__all__ = ["ATTR", "bp"]
