"""Customer rights (PIPL export and erasure) and the audit trail, for admins.

* ``GET /api/v1/customers/<id>/export``: a zip of everything held about the
  customer (:mod:`engine.customer_rights`); audited as ``customer.exported``.
* ``POST /api/v1/customers/<id>/erase``: erase the customer; audited as
  ``customer.erased``. A repeat answers 200 with ``already: true``.
* ``GET /api/v1/audit``: the audit trail, filtered and paged (:mod:`engine.audit_log`).
* Pages: ``/customers/<id>/export.zip`` and ``POST /customers/<id>/erase``
  (with a confirmation box and CSRF) from the customer page, and ``/audit``.

Admin only, everywhere: exporting or erasing a person, and reading who did
what, are not marketing tasks. Nothing here changes the audit log.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for

from engine.audit_log import AuditQueryError, audit_page, parse_audit_query
from engine.customer_rights import CustomerNotFound, erase_customer, export_audited
from engine.storage.customers_view_repo import MAX_ID

from . import api, services
from .access import local_time
from .auth import login_required
from .i18n import t

api_bp = Blueprint("rights_api", __name__, url_prefix="/api/v1")
bp = Blueprint("rights", __name__)


@api_bp.before_request
def _authenticate() -> Any:
    return api._authenticate()


@api_bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _admin_api() -> str:
    if not g.user.is_admin:
        raise api.ApiError(403, "this needs the admin role", "forbidden")
    return str(g.user.username)


def _customer_id(customer_id: int) -> int:
    if not 1 <= customer_id <= MAX_ID:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found")
    return customer_id


def _zip(body: bytes, customer_id: int) -> Response:
    stamp = services().now().strftime("%Y%m%d-%H%M%S")
    return Response(body, mimetype="application/zip", headers={
        "Content-Disposition": f'attachment; filename="customer-{customer_id}-{stamp}.zip"',
        "Cache-Control": "no-store"})


@api_bp.get("/customers/<int:customer_id>/export")
def api_export(customer_id: int) -> Any:
    actor = _admin_api()
    svc = services()
    try:
        body = export_audited(svc.session_factory, _customer_id(customer_id), now=svc.now(), actor=actor, via="api")
    except CustomerNotFound:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found") from None
    return _zip(body, customer_id)


@api_bp.post("/customers/<int:customer_id>/erase")
def api_erase(customer_id: int) -> Any:
    actor = _admin_api()
    svc = services()
    try:
        report = erase_customer(svc.session_factory, _customer_id(customer_id), now=svc.now(), actor=actor, via="api")
    except CustomerNotFound:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found") from None
    return api.json_response(report.to_json())


def _entry_json(row: Any, tz: str) -> dict[str, Any]:
    return {"id": row.id, "at": row.at.isoformat(), "at_local": local_time(row.at, tz), "actor": row.actor,
            "action": row.action, "entity_type": row.entity_type, "entity_id": row.entity_id, "diff": row.diff}


@api_bp.get("/audit")
def api_audit() -> Any:
    _admin_api()
    svc = services()
    try:
        query = parse_audit_query(request.args, tz=svc.tz)
    except AuditQueryError as exc:
        return api.json_response({"errors": [p.to_json() for p in exc.problems]}, 422)
    with svc.session_factory() as session:
        found = audit_page(session, query)
    return api.json_response({"items": [_entry_json(r, svc.tz) for r in found.rows], "total": found.total,
                              "page": found.page, "per_page": found.per_page, "pages": found.pages})


# ------------------------------------------------------------------ pages

def _admin_page() -> str:
    if not g.user.is_admin:
        abort(403)
    return str(g.user.username)


def can_manage_rights() -> bool:
    user = g.get("user")
    return user is not None and user.is_admin


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"can_manage_rights": can_manage_rights}


@bp.get("/customers/<int:customer_id>/export.zip")
@login_required
def export_page(customer_id: int) -> Any:
    actor = _admin_page()
    if not 1 <= customer_id <= MAX_ID:
        abort(404)
    svc = services()
    try:
        body = export_audited(svc.session_factory, customer_id, now=svc.now(), actor=actor, via="page")
    except CustomerNotFound:
        abort(404)
    return _zip(body, customer_id)


@bp.post("/customers/<int:customer_id>/erase")
@login_required
def erase_page(customer_id: int) -> Any:
    actor = _admin_page()
    if not 1 <= customer_id <= MAX_ID:
        abort(404)
    back = redirect(url_for("customers.detail", customer_id=customer_id) + "#rights")
    if request.form.get("confirm") != str(customer_id):
        flash(t("rights_need_confirm", id=customer_id), "error")
        return back
    svc = services()
    try:
        report = erase_customer(svc.session_factory, customer_id, now=svc.now(), actor=actor, via="page")
    except CustomerNotFound:
        abort(404)
    flash(t("rights_already" if report.already else "rights_erased", id=customer_id), "ok")
    return back


def action_label(action: str) -> str:
    """An audit action in the request's language (the code itself when unnamed)."""
    key = "audit_action_" + action.replace(".", "_")
    text = t(key)
    return action if text == key else text


@bp.get("/audit")
@login_required
def audit_index() -> Any:
    _admin_page()
    svc = services()
    errors: list[str] = []
    try:
        query = parse_audit_query(request.args, tz=svc.tz)
    except AuditQueryError as exc:
        errors = [t("audit_bad_filter", field=t("audit_field_" + p.field)) for p in exc.problems]
        query = parse_audit_query({}, tz=svc.tz)
    with svc.session_factory() as session:
        found = audit_page(session, query)
    from .i18n_rights import AUDIT_ACTIONS

    args = {k: request.args.get(k, "") for k in ("actor", "action", "target", "from", "to")}
    return render_template("audit.html", page=found, args=args, errors=errors, tz=svc.tz, local_time=local_time,
                           action_label=action_label, actions=AUDIT_ACTIONS)


def init_app(app: Any, csrf: Any) -> None:
    """Register the API (bearer tokens only, no CSRF) and the pages (CSRF-protected)."""
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)
    app.register_blueprint(bp)
