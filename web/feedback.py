"""Feedback in (issue 7): the public survey page, the survey-tool webhook, the
WeCom callback, and the staff feedback list.

* ``/survey/<token>``: a signed, expiring link (:mod:`engine.feedback.links`)
  names the customer, campaign, message and survey form. The form is any
  published ``public: true`` form (default ``nps_survey``), rendered and
  validated by the form runtime; CSRF-protected like every page. **One answer per customer and
  campaign**: a second submit is refused (409, "already answered") rather
  than overwriting — NPS counts one answer per respondent per wave, and the
  first answer is what rules (detractor follow-up) already acted on. A bad
  link answers 403, an expired one 410, a form that is not published (or
  not public) 404.
* ``/hooks/feedback/<connector>``: a ``survey_webhook`` connector verifies the
  HMAC and timestamp (401 on failure); the body's items are validated (422
  with field errors); each answer id is stored once — a replay with the same
  body answers 200 ``duplicate``, the same id with another body 409.
* ``/hooks/wecom/<connector>``: the WeCom callback (``wecom_callback`` or a
  ``wecom_app`` with callback secrets): GET answers the URL check, POST stores
  text replies as feedback and opts the customer out on an opt-out word
  (``feedback_tags`` definitions), retried deliveries stored once by MsgId;
  customer-contact events (contact added, joined a customer group) become
  customers, WeCom identities and events (:mod:`engine.wecom_in`).
* ``/feedback``: staff list with filters (campaign, tag, score) and the NPS.

Both hooks are exempt from CSRF (they carry their own signatures) and take
secrets only from the environment, through the connector registry.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, abort, current_app, g, jsonify, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from engine.definitions.specs import ConnectorSpec, FormSpec
from engine.feedback.links import ExpiredSurveyLink, InvalidSurveyLink, SurveyLink, sign_survey, verify_survey
from engine.feedback.nps import Nps
from engine.feedback.service import Incoming, Stored, body_hash, from_item, resolve, store
from engine.feedback.tagging import TagRules
from engine.forms.coerce import coerce_form_data
from engine.forms.errors import FieldError
from engine.forms.validate import validate_submission
from engine.ports import ConfigurationError, Connector, FeedbackItem, UnsupportedOperation, WebhookVerificationError
from engine.registry import UnknownForm
from engine.storage import feedback_repo
from engine.storage.database import transaction

from . import services
from .access import BadQuery, page_arg
from .auth import login_required
from .i18n import get_locale, label, t

bp = Blueprint("feedback", __name__)

#: The survey form when a link names none.
DEFAULT_SURVEY_FORM = "nps_survey"
#: How long a survey link stays valid by default.
SURVEY_LINK_DAYS = 30
#: Largest webhook body accepted.
HOOK_MAX_BYTES = 256 * 1024
#: Roles that may read feedback (admin always may).
FEEDBACK_ROLES = ("marketing", "marketing_manager", "marketing_director")


@bp.record_once
def _exempt_hooks(state: Any) -> None:
    """The hooks authenticate by signature, not by session: no CSRF token."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(f"{__name__}.feedback_hook")
        csrf.exempt(f"{__name__}.wecom_hook")


def survey_link(customer_id: int, campaign: str, *, message_id: int | None = None, form_id: str | None = None,
                days: int = SURVEY_LINK_DAYS, external: bool = True) -> str:
    """A signed survey URL for a message (the ``survey_url`` a template shows)."""
    svc = services()
    token = sign_survey(svc.settings.secret_key, customer_id=customer_id, campaign=campaign,
                        message_id=message_id, form_id=form_id, expires=svc.now() + timedelta(days=days))
    return url_for("feedback.survey", token=token, _external=external)


def _rules() -> TagRules:
    return TagRules.from_specs(services().registry.current().feedback_tags.values())


# ------------------------------------------------------------------ survey page

def _page(status: int, title_key: str, text_key: str, **params: Any) -> Any:
    return render_template("feedback/message.html", title=t(title_key), text=t(text_key, **params)), status


def _survey_form(link: SurveyLink) -> tuple[FormSpec, int] | None:
    try:
        return services().registry.form(link.form_id or DEFAULT_SURVEY_FORM)  # type: ignore[no-any-return]
    except UnknownForm:
        return None


def _form_class(spec: FormSpec, version: int) -> Any:
    from .formbuilder import build_form_class

    cache: dict[Any, Any] = current_app.extensions.setdefault("promoflow_form_classes", {})
    key = (spec.id, version, get_locale())
    if key not in cache:
        cache[key] = build_form_class(spec, get_locale(), t("choose"))
    return cache[key]


def _dedupe_key(link: SurveyLink) -> str:
    return f"survey:{link.campaign}:{link.customer_id}"


def _score(spec: FormSpec, clean: dict[str, Any]) -> int | None:
    """The NPS answer: the field ``score`` (or ``nps``), an integer 0–10."""
    for key in ("score", "nps"):
        value = clean.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10:
            return value
    return None


def _comment(spec: FormSpec, clean: dict[str, Any]) -> str | None:
    """The free text: ``comment`` if the form has it, else its text areas joined."""
    if isinstance(clean.get("comment"), str) and clean["comment"].strip():
        return str(clean["comment"])
    texts = [str(clean[f.key]) for f in spec.fields if f.type == "textarea" and clean.get(f.key)]
    return "\n".join(texts) or None


def _chosen_labels(spec: FormSpec, clean: dict[str, Any]) -> tuple[str, ...]:
    """Labels of the options picked in multi-choice fields (e.g. 物流慢): the
    customer tagged the answer themselves."""
    found: list[str] = []
    for f in spec.fields:
        if f.type != "multiselect" or not isinstance(clean.get(f.key), list):
            continue
        by_value = {o.value: o.label for o in (f.options or ())}
        found.extend(str(by_value.get(v, v)) for v in clean[f.key])
    return tuple(found)


@bp.route("/survey/<token>", methods=["GET", "POST"])
def survey(token: str) -> Any:
    svc = services()
    now = svc.now()
    try:
        link = verify_survey(token, svc.settings.secret_key, now)
    except ExpiredSurveyLink:
        return _page(410, "survey_expired_title", "survey_expired_text")
    except InvalidSurveyLink:
        return _page(403, "survey_invalid_title", "survey_invalid_text")
    found = _survey_form(link)
    if found is None or not found[0].public:  # only forms meant for the public
        return _page(404, "survey_unavailable_title", "survey_unavailable_text")
    spec, version = found
    with svc.session_factory() as session:
        if feedback_repo.customer_by_id(session, link.customer_id) is None:
            return _page(410, "survey_expired_title", "survey_expired_text")
        answered = feedback_repo.feedback_by_key(session, _dedupe_key(link)) is not None
    if answered:
        return _page(409 if request.method == "POST" else 200, "survey_answered_title", "survey_answered_text")
    cls = _form_class(spec, version)
    if request.method == "GET":
        return _render_survey(spec, cls())
    data: MultiDict[str, Any] = MultiDict(request.form)
    payload = coerce_form_data(spec, data, tz=svc.tz)
    clean, errors = validate_submission(spec, payload, now=now, tz=svc.tz, user=None)
    if errors:
        return _refill(spec, cls, data, errors)
    incoming = Incoming(source="survey", dedupe_key=_dedupe_key(link), received_at=now,
                        customer_id=link.customer_id, campaign=link.campaign, message_id=link.message_id,
                        score=_score(spec, clean), comment=_comment(spec, clean),
                        data={"form_id": spec.id, "form_version": version, "answers": clean},
                        body_hash=body_hash(clean), extra_tags=_chosen_labels(spec, clean))
    with transaction(svc.session_factory) as session:
        if incoming.message_id is not None and feedback_repo.message_by_id(session, incoming.message_id) is None:
            incoming = Incoming(**{**incoming.__dict__, "message_id": None})
        result = store(session, incoming, _rules())
    if result.status != "stored":
        return _page(409, "survey_answered_title", "survey_answered_text")
    return _page(200, "survey_thanks_title", "survey_thanks_text")


def _render_survey(spec: FormSpec, form: Any, *, status: int = 200, leftover: list[str] | None = None,
                   errors: bool = False) -> Any:
    return render_template("feedback/survey.html", spec=spec, form=form, leftover=leftover or [],
                           form_errors=errors, now_iso=services().now().isoformat(),
                           description=label(spec, "description")), status


def _refill(spec: FormSpec, cls: Any, data: MultiDict[str, Any], errors: list[FieldError]) -> Any:
    from .formbuilder import apply_errors

    form = cls(formdata=data)
    leftover = apply_errors(form, errors, get_locale())
    return _render_survey(spec, form, status=422, leftover=leftover, errors=True)


@bp.route("/s/<rule_id>/<journey_id>", methods=["GET", "POST"])
def unsigned_survey(rule_id: str, journey_id: str) -> Any:
    """The automation's ``survey_url`` is still ``/s/<rule>/<journey>``: an
    unsigned, guessable link, so it is refused with a clear page instead of
    letting anyone answer for any journey (see docs/feedback.md)."""
    return _page(403, "survey_invalid_title", "survey_invalid_text")


# ------------------------------------------------------------------ hooks

def _hook_error(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def _connector(connector_id: str, types: tuple[str, ...]) -> Connector | Response:
    """The enabled inbound connector ``connector_id`` of one of ``types``, built
    with its secrets from the environment; a JSON error response otherwise."""
    from connectors.registry import load_connector

    definitions = services().registry.current()
    spec: ConnectorSpec | None = definitions.connectors.get(connector_id)
    if spec is None or not spec.enabled or spec.type not in types:
        return _hook_error(404, "unknown_source", f"no enabled feedback source `{connector_id}`")
    # Built once per definitions version (a publish rebuilds); a failed build is retried next request.
    cache: dict[str, Any] = current_app.extensions.setdefault("promoflow.feedback_sources", {})
    if cache.get("key") is not definitions:
        cache.clear()
        cache["key"] = definitions
    if connector_id in cache:
        return cache[connector_id]  # type: ignore[no-any-return]
    try:
        cache[connector_id] = built = load_connector(spec, env=os.environ, clock=services().clock)
        return built
    except ConfigurationError as exc:
        current_app.logger.warning("feedback source %s is not configured: %s", connector_id, exc)
        return _hook_error(503, "not_configured", "this feedback source is not configured")


def _store_items(items: list[FeedbackItem], *, source: str, channel: str | None) -> list[Stored]:
    svc = services()
    definitions = svc.registry.current()
    rules = TagRules.from_specs(definitions.feedback_tags.values())
    now = svc.now()
    results = []
    with transaction(svc.session_factory) as session:
        for item in items:
            incoming, refs = from_item(item, source=source, received_at=now)
            incoming = resolve(session, incoming, definitions=definitions, sender=item.sender, refs=refs,
                               channel=channel)
            results.append(store(session, incoming, rules))
    return results


@bp.route("/hooks/feedback/<connector_id>", methods=["POST"])
def feedback_hook(connector_id: str) -> Any:
    from connectors.survey_items import InvalidFeedbackBody

    if (request.content_length or 0) > HOOK_MAX_BYTES:
        return _hook_error(413, "too_large", f"body larger than {HOOK_MAX_BYTES} bytes")
    connector = _connector(connector_id, ("survey_webhook",))
    if isinstance(connector, Response):
        return connector
    body = request.get_data(cache=False)
    try:
        items = connector.verify_webhook(dict(request.headers), body, request.args.to_dict())
    except WebhookVerificationError as exc:
        return _hook_error(401, exc.code or "bad_signature", str(exc))
    except InvalidFeedbackBody as exc:
        return _hook_error(422, "invalid_body", "the body is not valid survey data", fields=exc.errors)
    results = _store_items(list(items), source=connector_id, channel=None)
    conflicts = [r.feedback_id for r in results if r.status == "conflict"]
    if conflicts:
        return _hook_error(409, "replay_conflict", "an answer with this id was already received with another body",
                           feedback_ids=conflicts)
    status = "stored" if any(r.status == "stored" for r in results) else "duplicate"
    return jsonify({"status": status, "results": [
        {"status": r.status, "feedback_id": r.feedback_id, "tags": list(r.tags)} for r in results]})


@bp.route("/hooks/wecom/<connector_id>", methods=["GET", "POST"])
def wecom_hook(connector_id: str) -> Any:
    if (request.content_length or 0) > HOOK_MAX_BYTES:
        return Response("too large", status=413, mimetype="text/plain")
    connector = _connector(connector_id, ("wecom_callback", "wecom_app"))
    if isinstance(connector, Response):
        return connector
    try:
        answer = connector.verify_webhook(dict(request.headers), request.get_data(cache=False),
                                          request.args.to_dict())
    except UnsupportedOperation:
        return _hook_error(404, "no_callbacks", "this connector takes no callbacks")
    except WebhookVerificationError as exc:
        current_app.logger.info("WeCom callback refused on %s: %s", connector_id, exc.code)
        return Response("forbidden", status=401, mimetype="text/plain")
    if isinstance(answer, str):  # the URL check: answer the bare plaintext
        return Response(answer, mimetype="text/plain")
    replies = [item for item in answer if item.kind in ("reply", "opt_out")]
    if replies:
        _store_items(replies, source=f"wecom:{connector_id}", channel="wecom")
    contact_events = [item for item in answer if item.kind == "event"]
    if contact_events:  # contact added / joined a customer group: customers, identities, events (issue 12)
        from engine.wecom_in import apply_wecom_event

        svc = services()
        with transaction(svc.session_factory) as session:
            for item in contact_events:
                apply_wecom_event(session, item.data, connector_id=connector_id, now=svc.now())
    # WeCom retries unless it gets an answer within 5 s; an empty 200 means "received".
    return Response("", mimetype="text/plain")


# ------------------------------------------------------------------ staff list

def _allowed() -> None:
    user = g.get("user")
    if user is None or not user.has_any(FEEDBACK_ROLES):
        abort(403)


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return max(0, min(10, int(raw)))
    except ValueError:
        return None


@bp.route("/feedback")
@login_required
def feedback_list() -> Any:
    _allowed()
    svc = services()
    campaign = request.args.get("campaign", "").strip() or None
    tag = request.args.get("tag", "").strip() or None
    min_score, max_score = _int_arg("min_score"), _int_arg("max_score")
    try:
        page = page_arg(request.args)
    except BadQuery as exc:
        abort(400, description=str(exc))
    per_page = 50
    with svc.session_factory() as session:
        rows = feedback_repo.list_feedback(session, campaign=campaign, tag=tag, min_score=min_score,
                                           max_score=max_score, limit=per_page + 1, offset=(page - 1) * per_page)
        nps = Nps(*feedback_repo.nps_counts(session, campaign=campaign, tag=tag))
        campaigns = feedback_repo.campaigns(session)
    tags = [r.tag for spec in svc.registry.current().feedback_tags.values() for r in spec.rules]
    return render_template("feedback/list.html", rows=rows[:per_page], more=len(rows) > per_page, page=page,
                           nps=nps, campaigns=campaigns, tags=list(dict.fromkeys([*tags, "opt_out"])),
                           campaign=campaign, tag=tag, min_score=min_score, max_score=max_score)


__all__ = ["DEFAULT_SURVEY_FORM", "bp", "survey_link"]

