"""Storing feedback: one answer once, tied to its customer, campaign and
message, tagged by the keyword rules, with ``feedback.received`` (and, for an
opt-out reply, the consent change and ``customer.updated``) in the same
transaction.

Every way in (survey page, survey-tool webhook, WeCom callback, pull
connector) builds an :class:`Incoming` and calls :func:`store`. The unique
``dedupe_key`` makes a retried delivery harmless: the second call finds the
first row and reports ``duplicate`` (same body) or ``conflict`` (another body
under the same key), writing nothing.

Nothing here reads the clock (``now`` is passed in, aware UTC) or imports a
connector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.definitions.loader import DefinitionSet
from engine.feedback.tagging import TagRules
from engine.ports import FeedbackItem
from engine.storage import feedback_repo as repo
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["Incoming", "Stored", "body_hash", "campaign_of", "from_item", "resolve", "store", "withdraw_consent"]

COMMENT_LIMIT = 4000


@dataclass(frozen=True)
class Incoming:
    """One piece of feedback as received, before it is stored.

    ``dedupe_key`` identifies the item at its source (``survey:<campaign>:<customer>``,
    ``<source>:<event id>``, ``wecom:<connector>:<MsgId>``). ``reply`` marks a
    free-text reply, which is checked against the opt-out keywords."""

    source: str
    dedupe_key: str
    received_at: datetime
    customer_id: int | None = None
    campaign: str | None = None
    message_id: int | None = None
    score: int | None = None
    comment: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    body_hash: str | None = None
    reply: bool = False
    extra_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stored:
    """What :func:`store` did: ``status`` is ``stored``, ``duplicate`` (same
    key, same body: nothing written) or ``conflict`` (same key, another body)."""

    status: str
    feedback_id: int | None
    tags: tuple[str, ...] = ()
    opted_out: tuple[str, ...] = ()


def body_hash(body: bytes | str | Mapping[str, Any]) -> str:
    """SHA-256 hex of a body (a mapping is hashed as canonical JSON)."""
    if isinstance(body, Mapping):
        body = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    if isinstance(body, str):
        body = body.encode()
    return hashlib.sha256(body).hexdigest()


def campaign_of(definitions: DefinitionSet | None, rule_id: str | None) -> str | None:
    """A message's campaign: its rule's ``campaign:``, else the rule id."""
    if not rule_id:
        return None
    rule = definitions.rules.get(rule_id) if definitions is not None else None
    return (getattr(rule, "campaign", None) or rule_id) if rule is not None else rule_id


def resolve(session: Session, incoming: Incoming, *, definitions: DefinitionSet | None = None,
            sender: str | None = None, refs: Mapping[str, Any] | None = None,
            channel: str | None = None) -> Incoming:
    """Fill in the customer, message and campaign an item does not name.

    The customer comes from ``refs`` (``customer_id``, ``external_id``,
    ``phone``, ``email``) or the ``sender`` (a WeCom userid); the message from
    ``message_id`` or, for a reply, the latest message sent to the customer on
    ``channel``; the campaign from that message's rule when not given. An
    unknown customer id is dropped (kept in ``data``), never guessed."""
    refs = refs or {}
    customer_id = incoming.customer_id
    message = None
    if incoming.message_id is not None:
        message = repo.message_by_id(session, incoming.message_id)
    if customer_id is None and message is not None and message.get("customer_id") is not None:
        customer_id = int(message["customer_id"])
    if customer_id is not None and repo.customer_by_id(session, customer_id) is None:
        customer_id = None
    if customer_id is None:
        customer_id = repo.customer_by_ref(
            session, external_id=_text(refs.get("external_id")), phone=_text(refs.get("phone")),
            email=_text(refs.get("email")), wecom_userid=sender)
    if message is None and incoming.reply and (customer_id is not None or sender):
        message = repo.last_message_to(session, customer_id=customer_id, recipient=sender, channel=channel)
    campaign = incoming.campaign or campaign_of(definitions, message.get("rule_id") if message else None)
    return Incoming(**{**incoming.__dict__, "customer_id": customer_id, "campaign": campaign,
                       "message_id": message["id"] if message else None})


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def store(session: Session, incoming: Incoming, rules: TagRules) -> Stored:
    """Store ``incoming`` once, in the caller's transaction.

    Writes the feedback row (tags from ``rules`` plus ``extra_tags``), the
    ``feedback.received`` event (subject: the customer; payload: feedback id,
    customer, campaign, message, score, tags, source — what rules filter on),
    for a reply of a known customer ``message.replied``, and for a reply that
    is an opt-out word, consent withdrawn on the configured channels plus
    ``customer.updated`` with ``reason: opt_out``.
    """
    existing = repo.feedback_by_key(session, incoming.dedupe_key)
    if existing is not None:
        return _repeat(existing, incoming)
    comment = incoming.comment[:COMMENT_LIMIT] if incoming.comment else incoming.comment
    opt_out = incoming.reply and incoming.customer_id is not None and rules.is_opt_out(comment)
    tags = list(dict.fromkeys([*incoming.extra_tags, *rules.tags_for(comment, incoming.score)]))
    if incoming.reply and rules.is_opt_out(comment):
        tags.append("opt_out")
    db_now = to_db_time(incoming.received_at)
    feedback_id = repo.insert_feedback(session, {
        "customer_id": incoming.customer_id, "campaign": incoming.campaign[:128] if incoming.campaign else None,
        "message_id": incoming.message_id,
        "score": incoming.score, "comment": comment, "tags": tags, "source": incoming.source[:64],
        "received_at": db_now, "dedupe_key": incoming.dedupe_key[:255], "body_hash": incoming.body_hash,
        "data": dict(incoming.data) or None,
    })
    if feedback_id is None:  # lost a race with the same delivery
        found = repo.feedback_by_key(session, incoming.dedupe_key)
        return _repeat(found, incoming) if found else Stored("duplicate", None)
    payload = {"feedback_id": feedback_id, "customer_id": incoming.customer_id, "campaign": incoming.campaign,
               "message_id": incoming.message_id, "score": incoming.score, "tags": tags, "source": incoming.source}
    append_event(session, "feedback.received", "customer" if incoming.customer_id is not None else "feedback",
                 incoming.customer_id if incoming.customer_id is not None else feedback_id, payload,
                 incoming.received_at)
    if incoming.reply and incoming.customer_id is not None:
        # the fact rules test as ``message_replied`` (engine.automation.facts)
        append_event(session, "message.replied", "customer", incoming.customer_id,
                     {"customer_id": incoming.customer_id, "message_id": incoming.message_id,
                      "feedback_id": feedback_id, "source": incoming.source}, incoming.received_at)
    opted: tuple[str, ...] = ()
    if opt_out:
        assert incoming.customer_id is not None
        opted = rules.opt_out_channels
        withdraw_consent(session, incoming.customer_id, opted, source=incoming.source, now=incoming.received_at,
                         feedback_id=feedback_id)
    return Stored("stored", feedback_id, tuple(tags), opted)


def withdraw_consent(session: Session, customer_id: int, channels: tuple[str, ...] | list[str], *, source: str,
                     now: datetime, feedback_id: int | None = None) -> None:
    """Opt ``customer_id`` out of ``channels`` in the caller's transaction:
    consent rows ``granted = false`` (source ``opt_out:<source>``) — what rule
    audiences (``consent.sms: true``) and the dispatcher's last-moment check
    read — and a ``customer.updated`` event with ``reason: opt_out``.

    One path for every opt-out: a WeCom/SMS "TD" reply here, and the e-mail
    one-click unsubscribe (``connectors.unsubscribe`` tokens) when its web
    endpoint is built."""
    repo.opt_out(session, customer_id, list(channels), source=f"opt_out:{source}", db_now=to_db_time(now))
    append_event(session, "customer.updated", "customer", customer_id,
                 {"customer_id": customer_id, "reason": "opt_out", "source": source,
                  "consent": {ch: False for ch in channels}, "feedback_id": feedback_id}, now)


def _repeat(existing: tuple[int, str | None, int | None], incoming: Incoming) -> Stored:
    feedback_id, stored_hash, _ = existing
    if incoming.body_hash is not None and stored_hash is not None and stored_hash != incoming.body_hash:
        return Stored("conflict", feedback_id)
    return Stored("duplicate", feedback_id)


def from_item(item: FeedbackItem, *, source: str, received_at: datetime) -> tuple[Incoming, dict[str, Any]]:
    """An :class:`Incoming` (and the customer references to resolve) from a
    connector's :class:`~engine.ports.FeedbackItem`.

    Survey items carry ``data`` keys ``score``, ``campaign``, ``customer_id``,
    ``external_id``, ``phone``, ``email``, ``answers``; replies carry the
    sender and text."""
    data = dict(item.data or {})
    refs = {k: data.get(k) for k in ("external_id", "phone", "email")}
    customer_id = data.get("customer_id")
    message_id = item.message_id
    score = data.get("score")
    incoming = Incoming(
        source=source, dedupe_key=f"{source}:{item.provider_id}", received_at=item.occurred_at or received_at,
        customer_id=int(customer_id) if isinstance(customer_id, int) or (isinstance(customer_id, str)
                                                                        and customer_id.isdigit()) else None,
        campaign=_text(data.get("campaign")),
        message_id=int(message_id) if message_id is not None and str(message_id).isdigit() else None,
        score=int(score) if isinstance(score, int) else None, comment=item.text,
        data={k: v for k, v in data.items() if k not in ("score",)},
        body_hash=_text(data.get("_body_hash")) or body_hash({k: v for k, v in data.items() if k != "_body_hash"}
                                                             | {"text": item.text}),
        reply=item.kind in ("reply", "opt_out"),
    )
    return incoming, refs
