"""Events in (issue 12): custom events (``custom.*``) posted for a customer
through the REST API, the CSV import or a provider's callback.

Why here and not in the web layer: the API, ``promoflow events import`` and
the WeCom callback must check names, find the customer and apply the
idempotency key the same way.

* **Names.** Only ``custom.<name>`` may be posted (lower-case letters,
  digits, ``_``, ``-`` and dots). The engine's own events (``order.created``,
  ``customer.registered`` …, :data:`engine.definitions.catalog.EVENTS`) are
  refused with a pointer to the endpoint that emits them, and any other name
  with a "did you mean" over the catalog and the custom events the published
  rules listen to. A well-formed custom name that no enabled rule listens to
  is stored (a rule may come later) with a ``warning`` naming a close match.
* **Customer.** ``customer_id``, or ``customer``: an identity object
  (``{"phone": …}``, see :func:`engine.customers_in.resolve_customer`).
* **Idempotency.** ``idempotency_key`` is unique over all events: a repeat
  stores nothing and answers the first event (``duplicate``); the same key
  with another name or customer is an error (``idempotency_conflict``).
* **History.** A back-fill stores events as already processed: no rule acts.

The event's payload is ``{"customer_id", "data", "occurred_at", "source"}``;
rule triggers' ``when:`` see ``data``'s keys (``streak`` …) as well.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.customers_in import FieldProblem, resolve_customer, unstorable_text
from engine.definitions.catalog import CUSTOM_EVENT_PREFIX, EVENTS
from engine.definitions.errors import did_you_mean
from engine.storage import identity_repo
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["EventInput", "EventOutcome", "InvalidEvent", "listened_events", "parse_event", "post_events"]

_NAME = re.compile(r"custom\.[a-z0-9_\-]+(\.[a-z0-9_\-]+)*")
_KEYS = ("name", "customer_id", "customer", "idempotency_key", "data", "occurred_at")
MAX_KEY = 200
#: A larger number names nobody (and would overflow the SQL parameter).
MAX_CUSTOMER_ID = 2**63 - 1
MAX_DATA_BYTES = 16 * 1024
#: Where the engine's own events come from, for the refusal message.
_EMITTED_BY = {"customer.registered": "POST /api/v1/customers", "order.created": "POST /api/v1/orders",
               "coupon.redeemed": "POST /api/v1/coupons/redeem"}


class InvalidEvent(ValueError):
    def __init__(self, problems: list[FieldProblem]):
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass
class EventInput:
    name: str
    customer_id: int | None
    identity: dict[str, Any] | None
    idempotency_key: str
    data: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    warning: str | None = None


@dataclass
class EventOutcome:
    """``created``, ``duplicate`` (the first event of the key) or ``error``."""

    status: str
    event_id: int | None = None
    customer_id: int | None = None
    name: str | None = None
    problems: list[FieldProblem] = field(default_factory=list)
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "id": self.event_id, "customer_id": self.customer_id,
                               "name": self.name}
        if self.warning:
            out["warning"] = self.warning
        if self.problems:
            out["errors"] = [p.to_json() for p in self.problems]
        return out


def listened_events(rules: Collection[Any]) -> frozenset[str]:
    """The custom event names enabled rules are triggered by."""
    out = set()
    for rule in rules:
        name = getattr(getattr(rule, "trigger", None), "event", None)
        if rule.enabled and isinstance(name, str) and name.startswith(CUSTOM_EVENT_PREFIX):
            out.add(name)
    return frozenset(out)


def check_name(name: Any, listened: Collection[str]) -> tuple[FieldProblem | None, str | None]:
    """A problem with an event name (or None) and a warning for an unheard custom name."""
    if not isinstance(name, str) or not name:
        return FieldProblem("name", "required", "give the event's name, e.g. custom.community.joined"), None
    if name in EVENTS:
        where = _EMITTED_BY.get(name)
        return FieldProblem("name", "reserved", f"`{name}` is emitted by promoflow itself"
                            + (f" ({where})" if where else "") + "; post custom.* events here"), None
    if not _NAME.fullmatch(name) or len(name) > 128:
        return FieldProblem("name", "unknown_event",
                            f"unknown event `{name[:80]}`{did_you_mean(name, set(EVENTS) | set(listened))}; "
                            f"posted events are named custom.<name> (a-z, 0-9, _, -, dots)"), None
    if name not in listened:
        close = did_you_mean(name, listened)
        return None, f"no published rule listens to `{name}`{close}" if close else \
            f"no published rule listens to `{name}` yet"
    return None, None


def parse_event(payload: Any, *, listened: Collection[str], timezone: str,
                default_key: str | None = None) -> EventInput:
    """One event item from JSON, checked field by field.

    Raises:
        InvalidEvent: every problem of the item.
    """
    if not isinstance(payload, dict):
        raise InvalidEvent([FieldProblem("", "type", "an event is a JSON object")])
    bad = unstorable_text(payload)
    if bad:
        raise InvalidEvent([FieldProblem(p[:64], "invalid_text", "contains NUL or an invalid (surrogate) character")
                            for p in bad[:20]])
    problems: list[FieldProblem] = []
    for key in payload:
        if key not in _KEYS:
            problems.append(FieldProblem(str(key)[:64], "unknown_field",
                                         f"unknown field `{str(key)[:64]}`{did_you_mean(str(key), _KEYS)}"))
    name = payload.get("name")
    problem, warning = check_name(name, listened)
    if problem:
        problems.append(problem)
    cid, identity = payload.get("customer_id"), payload.get("customer")
    if cid is not None and (isinstance(cid, bool) or not isinstance(cid, int) or not 1 <= cid <= MAX_CUSTOMER_ID):
        problems.append(FieldProblem("customer_id", "type", "must be a customer id (a positive whole number)"))
    if identity is not None and (not isinstance(identity, dict) or not identity):
        problems.append(FieldProblem("customer", "type", 'must be an identity object like {"phone": "13800000000"}'))
    if cid is None and identity is None:
        problems.append(FieldProblem("customer_id", "required", "give customer_id or customer (an identity)"))
    key = payload.get("idempotency_key", default_key)
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        problems.append(FieldProblem("idempotency_key", "required" if key is None else "invalid",
                                     f"give a unique key of 1–{MAX_KEY} characters (retries send the same key)"))
    data = payload.get("data") or {}
    if not isinstance(data, dict):
        problems.append(FieldProblem("data", "type", "must be an object"))
        data = {}
    elif len(json.dumps(data, ensure_ascii=False, default=str)) > MAX_DATA_BYTES:
        problems.append(FieldProblem("data", "too_large", f"at most {MAX_DATA_BYTES} bytes of JSON"))
    occurred = payload.get("occurred_at")
    occurred_at = None
    if occurred is not None:
        try:
            if not isinstance(occurred, str):
                raise ValueError
            occurred_at = datetime.fromisoformat(occurred.strip().replace("Z", "+00:00"))
            if occurred_at.tzinfo is None:
                occurred_at = occurred_at.replace(tzinfo=ZoneInfo(timezone))
        except ValueError:
            problems.append(FieldProblem("occurred_at", "invalid", "must be a time like 2026-03-01T10:00:00+08:00"))
    if problems:
        raise InvalidEvent(problems)
    assert isinstance(name, str) and isinstance(key, str)  # check_name and the key check refused anything else
    return EventInput(name=name, customer_id=cid, identity=identity, idempotency_key=key.strip(),
                      data=data, occurred_at=occurred_at, warning=warning)


def content_key(prefix: str, *parts: Any) -> str:
    """A key derived from an event's content, for sources that send none
    (a CSV line): the same content twice is one event."""
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}:{digest[:40]}"


def post_events(session: Session, items: Sequence[EventInput | None], *, now: datetime, source: str,
                history: bool = False) -> list[EventOutcome]:
    """Store each item once, in the caller's transaction; one outcome per item
    (``None`` items, already refused by the caller, come back as ``error``)."""
    db_now = to_db_time(now)
    wanted = {i.customer_id for i in items if i is not None and i.customer_id is not None}
    known = set(identity_repo.customer_rows(session, wanted)) if wanted else set()
    out: list[EventOutcome] = []
    for item in items:
        if item is None:
            out.append(EventOutcome("error"))
            continue
        cid = item.customer_id
        if cid is None:
            try:
                cid = resolve_customer(session, item.identity or {})
            except ValueError as exc:
                out.append(EventOutcome("error", name=item.name,
                                        problems=[FieldProblem("customer", "invalid", str(exc))]))
                continue
            if cid is None:
                out.append(EventOutcome("error", name=item.name, problems=[FieldProblem(
                    "customer", "not_found", "no customer has this identity; create it with POST /api/v1/customers")]))
                continue
        elif cid not in known:
            out.append(EventOutcome("error", name=item.name, problems=[
                FieldProblem("customer_id", "not_found", f"no customer {cid}")]))
            continue
        payload = {"customer_id": cid, "data": item.data, "source": source,
                   "occurred_at": (item.occurred_at or now).isoformat()}
        row = {"name": item.name, "subject_type": "customer", "subject_id": str(cid), "payload": payload,
               "created_at": db_now, "processed_at": db_now if history else None,
               "idempotency_key": item.idempotency_key}
        event_id = identity_repo.insert_event_once(session, row)
        if event_id is not None:
            out.append(EventOutcome("created", event_id, cid, item.name, warning=item.warning))
            continue
        first = identity_repo.event_by_key(session, item.idempotency_key)
        if first is None:  # pragma: no cover - the key's row was there a moment ago in this transaction
            out.append(EventOutcome("error", name=item.name, problems=[
                FieldProblem("idempotency_key", "conflict", "try again")]))
        elif first["name"] != item.name or first["subject_id"] != str(cid):
            out.append(EventOutcome("error", int(first["id"]), name=item.name, problems=[FieldProblem(
                "idempotency_key", "idempotency_conflict",
                f"this key was used for event {first['id']} ({first['name']}, customer {first['subject_id']})")]))
        else:
            out.append(EventOutcome("duplicate", int(first["id"]), cid, item.name))
    return out
