"""Data in over REST (issue 12): customers and custom events.

* ``POST /api/v1/customers``: upsert one customer by identity (201 created,
  200 updated), or ``{"items": [...]}``: up to :data:`BATCH_LIMIT` items,
  200 with a result per item (``created`` / ``updated`` / ``error`` with
  field errors); good items are written even when others fail.
* ``GET`` / ``PATCH /api/v1/customers/<id>``: read; change some fields
  (``null`` clears a profile field; ``tags`` adds, ``remove_tags`` removes).
* ``POST /api/v1/customers/<id>/merge`` ``{"from": other_id}``: merge the
  other customer into this one (:mod:`engine.customers_merge`).
* ``POST /api/v1/events``: a ``custom.*`` event for a customer with an
  idempotency key (201; a repeat answers the first event with 200), or
  ``{"items": [...]}`` in batch.

Who: tokens of users with the ``integration`` role, and admins; merging also
marketing. The engine does the work (:mod:`engine.customers_in`,
:mod:`engine.events_in`); this module only speaks HTTP.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request, url_for

from engine.customers_in import InvalidCustomer, customer_json, emit_updated, parse_customer, upsert_customers
from engine.customers_merge import MergeError, merge_customers
from engine.events_in import InvalidEvent, listened_events, parse_event, post_events
from engine.storage.customers_view_repo import MAX_ID
from engine.storage.database import transaction

from . import api, services

bp = Blueprint("customers_api", __name__, url_prefix="/api/v1")

#: Roles that may push customers and events (admin always may).
INGEST_ROLES = ("integration",)
#: Roles that may merge customers (admin always may).
MERGE_ROLES = ("integration", "marketing", "marketing_manager")
#: Items per batch request.
BATCH_LIMIT = 1000
#: Largest batch body (1,000 customers with tags and attributes fit easily).
BATCH_MAX_CONTENT_LENGTH = 8 * 1024 * 1024


@bp.before_request
def _authenticate() -> Any:
    denied = api._authenticate()
    if denied is None:
        request.max_content_length = BATCH_MAX_CONTENT_LENGTH
    return denied


@bp.errorhandler(api.ApiError)
def _api_error(exc: api.ApiError) -> Any:
    return api._api_error(exc)


def _require(roles: tuple[str, ...]) -> str:
    user = g.user
    if not user.has_any(roles):
        raise api.ApiError(403, f"this needs one of the roles: {', '.join(roles)} (or admin)", "forbidden")
    return str(user.username)


def _in_range(customer_id: int) -> int:
    """A path id a customer can have, else 404 before any SQL (no 64-bit overflow)."""
    if not 1 <= customer_id <= MAX_ID:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found")
    return customer_id


def _items(body: Any) -> list[Any] | None:
    """The batch's items, or None for a single object."""
    if isinstance(body, dict) and "items" in body:
        items = body["items"]
        if set(body) != {"items"}:
            raise api.ApiError(400, "a batch is {\"items\": [...]} and nothing else", "bad_batch")
        if not isinstance(items, list) or not items:
            raise api.ApiError(400, "`items` must be a non-empty list", "bad_batch")
        if len(items) > BATCH_LIMIT:
            raise api.ApiError(413, f"{len(items)} items: a batch holds at most {BATCH_LIMIT}; split it",
                               "batch_too_large", limit=BATCH_LIMIT)
        return items
    return None


def _invalid(problems: list[Any]) -> Any:
    return api.json_response({"errors": [p.to_json() for p in problems]}, 422)


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return {"results": results, "counts": counts}


# ------------------------------------------------------------------ customers

def _parse_each(raw: list[Any], parse: Any, invalid: type[Exception]) -> tuple[list[Any], list[Any]]:
    """Each entry parsed, or None with its problems beside it (a batch answers item by item)."""
    parsed: list[Any] = []
    problems: list[Any] = []
    for entry in raw:
        try:
            parsed.append(parse(entry))
            problems.append(None)
        except invalid as exc:
            parsed.append(None)
            problems.append(exc.problems)  # type: ignore[attr-defined]
    return parsed, problems


def _batch_answer(outcomes: list[Any], problems: list[Any]) -> Any:
    """The batch's answer: one result per item (its parse problems, else its outcome) and the counts."""
    results = []
    for i, (outcome, bad) in enumerate(zip(outcomes, problems)):
        if bad is not None:
            outcome.problems = bad
        results.append({"index": i, **outcome.to_json()})
    return api.json_response(_summary(results))


@bp.post("/customers")
def upsert() -> Any:
    actor = _require(INGEST_ROLES)
    svc = services()
    body = api._body()
    batch = _items(body)
    raw = batch if batch is not None else [body]
    parsed, problems = _parse_each(raw, lambda e: parse_customer(e, timezone=svc.tz, source=f"api:{actor}"),
                                   InvalidCustomer)
    if batch is None and problems[0] is not None:
        return _invalid(problems[0])
    found: dict[str, Any] = {}
    with transaction(svc.session_factory) as session:
        outcomes = upsert_customers(session, parsed, now=svc.now(), source=f"api:{actor}")
        if batch is None and outcomes[0].status != "error":
            found = customer_json(session, outcomes[0].customer_id) or {}  # type: ignore[arg-type]
    if batch is not None:
        return _batch_answer(outcomes, problems)
    outcome = outcomes[0]
    if outcome.status == "error":
        status = 409 if any(p.code == "identity_conflict" for p in outcome.problems) else 422
        return api.json_response({"errors": [p.to_json() for p in outcome.problems]}, status)
    return api.json_response({**found, "status": outcome.status}, 201 if outcome.status == "created" else 200,
                             Location=url_for("customers_api.get_customer", customer_id=outcome.customer_id))


@bp.get("/customers/<int:customer_id>")
def get_customer(customer_id: int) -> Any:
    _require(INGEST_ROLES)
    svc = services()
    with svc.session_factory() as session:
        found = customer_json(session, customer_id)
    if found is None:
        raise api.ApiError(404, f"no customer {customer_id}", "not_found")
    return api.json_response(found)


@bp.patch("/customers/<int:customer_id>")
def patch_customer(customer_id: int) -> Any:
    actor = _require(INGEST_ROLES)
    _in_range(customer_id)
    svc = services()
    body = api._body()
    try:
        item = parse_customer(body, timezone=svc.tz, source=f"api:{actor}", partial=True)
    except InvalidCustomer as exc:
        return _invalid(exc.problems)
    with transaction(svc.session_factory) as session:
        outcome = upsert_customers(session, [item], now=svc.now(), source=f"api:{actor}", targets=[customer_id])[0]
        if outcome.status != "error":
            emit_updated(session, customer_id, body, now=svc.now(), source=f"api:{actor}")
        found = customer_json(session, customer_id) if outcome.status != "error" else None
    if outcome.status == "error":
        if any(p.code == "not_found" for p in outcome.problems):
            raise api.ApiError(404, f"no customer {customer_id}", "not_found")
        status = 409 if any(p.code == "identity_conflict" for p in outcome.problems) else 422
        return api.json_response({"errors": [p.to_json() for p in outcome.problems]}, status)
    return api.json_response(found)


@bp.post("/customers/<int:customer_id>/merge")
def merge(customer_id: int) -> Any:
    actor = _require(MERGE_ROLES)
    _in_range(customer_id)
    body = api._body()
    other = body.get("from") if isinstance(body, dict) else None
    if isinstance(other, bool) or not isinstance(other, int) or not 1 <= other <= MAX_ID:
        return api.json_response({"errors": [{"field": "from", "code": "required",
                                              "message": "the id of the customer to merge into this one"}]}, 422)
    svc = services()
    try:
        with transaction(svc.session_factory) as session:
            report = merge_customers(session, customer_id, other, now=svc.now(), actor=actor)
            found = customer_json(session, customer_id)
    except MergeError as exc:
        if exc.code == "not_found":
            raise api.ApiError(404, str(exc), "not_found") from None
        if exc.code == "conflict":
            raise api.ApiError(409, str(exc), "merge_conflict") from None
        return api.json_response({"errors": [{"field": "from", "code": exc.code, "message": str(exc)}]}, 422)
    return api.json_response({**report.to_json(), "customer": found})


# ------------------------------------------------------------------ events

@bp.post("/events")
def events() -> Any:
    actor = _require(INGEST_ROLES)
    svc = services()
    body = api._body()
    batch = _items(body)
    raw = batch if batch is not None else [body]
    listened = listened_events(svc.registry.current().rules.values())
    parsed, problems = _parse_each(raw, lambda e: parse_event(e, listened=listened, timezone=svc.tz), InvalidEvent)
    if batch is None and problems[0] is not None:
        return _invalid(problems[0])
    with transaction(svc.session_factory) as session:
        outcomes = post_events(session, parsed, now=svc.now(), source=f"api:{actor}")
    if batch is not None:
        return _batch_answer(outcomes, problems)
    outcome = outcomes[0]
    if outcome.status == "error":
        status = 409 if any(p.code == "idempotency_conflict" for p in outcome.problems) else 422
        return api.json_response({"errors": [p.to_json() for p in outcome.problems]}, status)
    return api.json_response(outcome.to_json(), 201 if outcome.status == "created" else 200)


__all__ = ["BATCH_LIMIT", "INGEST_ROLES", "MERGE_ROLES", "bp", "init_app"]


def init_app(app: Any, csrf: Any) -> None:
    """Register the API blueprint (bearer tokens only, so no CSRF, like
    ``web.api``) and the customer page's merge action (CSRF-protected)."""
    from . import customer_actions

    app.register_blueprint(bp)
    csrf.exempt(bp)
    app.register_blueprint(customer_actions.bp)
