"""The messages page and API: what the dispatcher did with every outbox row.

Who: marketing, marketing managers and admins (the people who decide whether a
message may go out twice). What: filters by status, channel, rule, connector
and creation date (local days), the count per status, a detail view with the
attempt history, receipts, provider id and errors, and **resend** for dead
letters and ``unknown`` rows. An ``unknown`` marketing message may already
have reached the customer, so its resend asks for an explicit confirmation
(a second form on the page; ``{"confirm_duplicate": true}`` in the API) and
the audit log records who confirmed it.

``bp`` serves the HTML pages (session login, CSRF); ``api_bp`` serves
``/api/v1/messages`` with bearer tokens (the API's own authentication,
imported from :mod:`web.api`) and the delivery-receipt callbacks
``/api/v1/messages/receipts/<connector>``, which authenticate by the
provider's signature or the connector's receipt token instead. Configure at
the provider: Twilio ``StatusCallback`` = the connector's ``status_callback``
setting = ``https://<host>/api/v1/messages/receipts/<connector id>``; Aliyun
SmsReport HTTP push and Tencent's status callback =
``https://<host>/api/v1/messages/receipts/<connector id>?token=<receipt_token>``
(the connector's ``receipt_token`` secret, from the environment).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request, url_for

from engine.dispatch import Dispatcher, ResendResult, apply_receipts
from engine.personal_data import mask
from engine.ports import ConnectorError, UnsupportedOperation, WebhookVerificationError
from engine.storage import clicks_repo, dispatch_repo
from engine.storage.times import to_db_time

from . import api, services
from .access import BadQuery, day_arg, page_arg
from .auth import login_required
from .connector_health import connector_problems, waiting_counts
from .i18n import t
from .personal_data import NotPermitted, may_unmask_here, show_full

log = logging.getLogger("promoflow.web.messages")

bp = Blueprint("messages", __name__)
api_bp = Blueprint("messages_api", __name__, url_prefix="/api/v1/messages")

#: Roles that may see and resend messages (admin always may).
MESSAGE_ROLES = ("marketing", "marketing_manager")
STATUSES = ("queued", "sending", "retry", "sent", "unknown", "failed", "dead", "skipped")
PAGE_SIZE = 50
RECEIPT_ENDPOINT = "messages_api.receipts"


# ------------------------------------------------------------ shared

def _allowed(user: Any) -> bool:
    return user is not None and user.has_any(MESSAGE_ROLES)


def _unmasked(row: dict[str, Any], message_id: int) -> bool:
    """Mask the recipient (and the recipient where the body repeats it) in
    place unless the request asked for full data and may have it (audited,
    issue 16); True when shown in full. Raises NotPermitted."""
    if row.get("recipient") and show_full("message", message_id, ("recipient",)):
        return True
    recipient = str(row.get("recipient") or "")
    if recipient:
        row["recipient"] = mask(recipient)
        if isinstance(row.get("body"), str):
            row["body"] = row["body"].replace(recipient, row["recipient"])
    return False


class BadFilter(ValueError):
    pass


def _filters(args: Any, tz: str) -> dict[str, Any]:
    """Filters from query parameters; dates are local days (``YYYY-MM-DD``)."""
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadFilter(f"unknown status `{status}`")
    zone = ZoneInfo(tz)
    out: dict[str, Any] = {"status": status, "channel": args.get("channel") or None,
                           "rule_id": args.get("rule") or None, "connector": args.get("connector") or None}
    for name, key, extra in (("from", "created_from", 0), ("to", "created_before", 1)):
        try:
            day = day_arg(args, name)
        except BadQuery as exc:
            raise BadFilter(str(exc)) from None
        if day is not None:
            out[key] = to_db_time(datetime.combine(day + timedelta(days=extra), time(0), zone))
    return out


def _page(args: Any) -> int:
    try:
        return page_arg(args)
    except BadQuery as exc:
        raise BadFilter(str(exc)) from None


def _resend(message_id: int, confirm: bool, actor: str) -> str:
    svc = services()
    return Dispatcher(svc.session_factory, {}, worker_id="web").resend(
        message_id, svc.now(), confirm_duplicate=confirm, actor=actor)


# ------------------------------------------------------------ pages

@bp.route("/messages")
@login_required
def index() -> Any:
    if not _allowed(g.get("user")):
        abort(403)
    svc = services()
    try:
        filters = _filters(request.args, svc.tz)
        page = _page(request.args)
    except BadFilter as exc:
        abort(400, str(exc))
    with svc.session_factory() as session:
        rows, total, counts = dispatch_repo.list_messages(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                                                          **filters)
        choices = dispatch_repo.filter_choices(session)
    args = {k: v for k, v in request.args.items() if k != "page"}
    problems = connector_problems(svc.registry.current(), svc.settings)
    return render_template("messages/index.html", rows=rows, total=total, counts=counts, choices=choices,
                           statuses=STATUSES, args=args, page=page,
                           base_args={k: v for k, v in args.items() if k != "status"}, pages=max(1, -(-total // PAGE_SIZE)),
                           mask=mask, connector_problems=problems,
                           waiting=waiting_counts(svc.session_factory, problems))


@bp.route("/messages/<bigint:message_id>")
@login_required
def detail(message_id: int) -> Any:
    if not _allowed(g.get("user")):
        abort(403)
    with services().session_factory() as session:
        row = dispatch_repo.message_detail(session, message_id)
        links = clicks_repo.links_of(session, message_id)
    if row is None:
        abort(404)
    try:
        full = _unmasked(row, message_id)
    except NotPermitted:
        abort(403, t("pii_no_permission"))
    return render_template("messages/detail.html", m=row, confirm=request.args.get("confirm") == "1", links=links,
                           masked=not full, may_unmask=may_unmask_here())


@bp.route("/messages/<bigint:message_id>/resend", methods=["POST"])
@login_required
def resend(message_id: int) -> Any:
    user = g.get("user")
    if not _allowed(user):
        abort(403)
    outcome = _resend(message_id, request.form.get("confirm_duplicate") == "1", user.username)
    if outcome == ResendResult.NOT_FOUND:
        abort(404)
    if outcome == ResendResult.NEEDS_CONFIRMATION:
        return redirect(url_for("messages.detail", message_id=message_id, confirm=1))
    flash(t("msg_resent") if outcome == ResendResult.QUEUED else t("msg_not_resendable"),
          "ok" if outcome == ResendResult.QUEUED else "error")
    return redirect(url_for("messages.detail", message_id=message_id))


# ------------------------------------------------------------ API

@api_bp.before_request
def _authenticate() -> Any:
    """Bearer tokens like the rest of the API; receipt callbacks carry the
    provider's own proof instead."""
    if request.endpoint == RECEIPT_ENDPOINT:
        request.max_content_length = current_app.config["API_MAX_CONTENT_LENGTH"]
        g.user = None
        return None
    return api._authenticate()


@api_bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _api_user() -> Any:
    user = g.get("user")
    if not _allowed(user):
        raise api.ApiError(403, "messages are for marketing roles and admins", "forbidden")
    return user


def _json_row(row: dict[str, Any], full: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in ("claimed_by", "payload", "idempotency_key") and not full:
            continue
        if isinstance(value, datetime):
            value = value.isoformat() + "Z"
        elif isinstance(value, list):
            value = [_json_row(v, True) if isinstance(v, dict) else v for v in value]
        out[key] = value
    if not full:
        out["recipient"] = mask(row.get("recipient"))
    out["resendable"] = row.get("status") in ("dead", "unknown")
    out["resend_needs_confirmation"] = (row.get("status") == "unknown"
                                        and (row.get("delivery_class") or "marketing") == "marketing")
    return out


@api_bp.route("", methods=["GET"])
def api_list() -> Any:
    _api_user()
    svc = services()
    try:
        filters = _filters(request.args, svc.tz)
        page = _page(request.args)
    except BadFilter as exc:
        raise api.ApiError(400, str(exc), "bad_query") from None
    with svc.session_factory() as session:
        rows, total, counts = dispatch_repo.list_messages(session, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
                                                          **filters)
    return api.json_response({"messages": [_json_row(r) for r in rows], "total": total, "page": page,
                              "page_size": PAGE_SIZE, "counts": counts})


@api_bp.route("/<bigint:message_id>", methods=["GET"])
def api_detail(message_id: int) -> Any:
    _api_user()
    with services().session_factory() as session:
        row = dispatch_repo.message_detail(session, message_id)
    if row is None:
        raise api.ApiError(404, f"no message {message_id}", "not_found")
    row.pop("payload", None)
    try:
        _unmasked(row, message_id)
    except NotPermitted:
        raise api.ApiError(403, "showing the full recipient needs the unmask_personal_data permission",
                           "forbidden") from None
    return api.json_response(_json_row(row, full=True))


@api_bp.route("/<bigint:message_id>/resend", methods=["POST"])
def api_resend(message_id: int) -> Any:
    user = _api_user()
    raw = request.get_data(cache=False)
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise api.ApiError(400, "the body is not JSON", "bad_json") from None
        except RecursionError:  # issue 16: deep JSON was a 500
            raise api.ApiError(400, "the JSON is nested too deeply", "bad_json") from None
    if not isinstance(body, dict):
        raise api.ApiError(400, "send a JSON object", "bad_json")
    outcome = _resend(message_id, body.get("confirm_duplicate") is True, user.username)
    if outcome == ResendResult.NOT_FOUND:
        raise api.ApiError(404, f"no message {message_id}", "not_found")
    if outcome == ResendResult.NEEDS_CONFIRMATION:
        raise api.ApiError(409, "this marketing message may already have reached the customer; resend with "
                                '{"confirm_duplicate": true} to send it again anyway', "needs_confirmation")
    if outcome == ResendResult.NOT_RESENDABLE:
        raise api.ApiError(409, "only dead letters and unknown messages can be resent", "not_resendable")
    return api.json_response({"id": message_id, "status": "queued"})


# ------------------------------------------------------------ receipts

#: What each provider expects back from a receipt callback.
RECEIPT_ANSWERS: dict[str, tuple[str, int, str]] = {
    "aliyun_sms": ('{"code":0,"msg":"成功"}', 200, "application/json"),
    "tencent_sms": ('{"result":0,"errmsg":"OK"}', 200, "application/json"),
    "twilio": ("", 204, "text/plain"),
}


def _receipt_connector(connector_id: str) -> Any:
    """The connector of the current definitions, built once per definitions
    version (its secrets come from the environment)."""
    svc = services()
    definitions = svc.registry.current()
    spec = definitions.connectors.get(connector_id)
    if spec is None or not spec.enabled or spec.type not in RECEIPT_ANSWERS:
        return None
    cache = current_app.extensions.setdefault("promoflow.receipt_connectors", {})
    key = (id(definitions), connector_id)
    if key not in cache:
        from connectors.registry import load_connector

        cache.clear()
        cache[key] = load_connector(spec, env=os.environ)
    return cache[key]


@api_bp.record_once
def _redact_access_log(state: Any) -> None:
    """Aliyun and Tencent receipts carry their shared secret in the URL
    (``?token=``): keep it out of the development server's request log. A
    production access log (gunicorn, nginx) must be told the same."""
    from connectors._base import RedactQueryFilter

    logging.getLogger("werkzeug").addFilter(RedactQueryFilter())


@api_bp.route("/receipts/<connector_id>", methods=["POST"])
def receipts(connector_id: str) -> Any:
    """A provider's delivery receipt callback: verified by the connector
    (Twilio's signature; the receipt token for Aliyun and Tencent), stored
    once per event, applied to the message's delivery status."""
    try:
        connector = _receipt_connector(connector_id)
    except ConnectorError as exc:  # names the missing variable, never a value
        log.error("receipt connector %s could not be built: %s", connector_id, exc)
        return Response("connector not configured", status=503, mimetype="text/plain")
    if connector is None:
        return Response("no such receipt endpoint", status=404, mimetype="text/plain")
    body = request.get_data(cache=False)
    try:
        items = connector.verify_webhook(dict(request.headers), body, request.args.to_dict())
    except UnsupportedOperation:
        return Response("receipts are not enabled for this connector", status=404, mimetype="text/plain")
    except WebhookVerificationError:
        return Response("forbidden", status=403, mimetype="text/plain")
    applied = apply_receipts(services().session_factory, connector_id, items, services().now())
    log.info("connector %s: %d receipt(s), %d applied", connector_id, len(items), applied)
    text, status, mimetype = RECEIPT_ANSWERS[connector.spec.type]
    return Response(text, status=status, mimetype=mimetype)


__all__ = ["MESSAGE_ROLES", "api_bp", "bp", "mask"]
