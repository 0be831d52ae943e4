"""The outbox: every message the engine decides to send becomes one row.

A row is written in the transaction that decided to send it, already rendered
(sandboxed Jinja2, :mod:`engine.templates`), with an idempotency key that is
unique in the table: deciding twice (a retried batch, two schedulers, a
restarted worker) writes one row. Dispatchers deliver rows later through the
connector the row names; :func:`deliver_log` is the ``log`` connector, for
which the database row itself is the delivery, so the whole loop runs and is
tested without any provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.definitions.specs import ConnectorSpec, TemplateSpec
from engine.storage import outbox_repo
from engine.storage.times import to_db_time
from engine.templates import RenderedMessage, render

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet

__all__ = ["OutboxError", "OutboxItem", "deliver_log", "enqueue", "enqueue_many", "message_payload", "pick_connector",
           "row_for"]

QUEUED = "queued"


class OutboxError(LookupError):
    """A message cannot be queued: unknown template, or no connector for its channel."""


def pick_connector(definitions: DefinitionSet, channel: str, explicit: str | None = None) -> ConnectorSpec:
    """The connector for ``channel``: ``explicit`` if given, else the enabled
    ``default: true`` one, else the only enabled one.

    Raises:
        OutboxError: the named connector is missing or on another channel; no
            (or no unambiguous) connector serves the channel.
    """
    connectors = definitions.connectors
    if explicit is not None:
        spec = connectors.get(explicit)
        if spec is None:
            raise OutboxError(f"unknown connector `{explicit}`")
        if spec.channel != channel:
            raise OutboxError(f"connector `{explicit}` serves {spec.channel}, not {channel}")
        return spec
    candidates = [c for c in connectors.values() if c.channel == channel and c.enabled]
    defaults = [c for c in candidates if c.default]
    if len(defaults) == 1:
        return defaults[0]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise OutboxError(f"no connector for channel {channel}")
    raise OutboxError(f"several connectors for channel {channel} and none is `default: true`")


@dataclass(frozen=True)
class OutboxItem:
    """One message to queue, for :func:`enqueue_many` (a journey batch)."""

    channel: str
    to: str
    template_id: str
    context: Mapping[str, Any]
    idempotency_key: str
    delivery_class: str = "transactional"
    connector: str | None = None
    rule_id: str | None = None
    journey_id: int | None = None
    customer_id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def provider_template_code(template: TemplateSpec | None, connector: ConnectorSpec) -> str | None:
    """The provider's code for a pre-approved SMS template (Aliyun and Tencent
    send only those), as the chosen connector needs it."""
    sms = template.sms if template is not None else None
    if sms is None:
        return None
    return {"aliyun_sms": sms.aliyun_template_code, "tencent_sms": sms.tencent_template_id}.get(connector.type)


def message_payload(template_id: str, message: RenderedMessage, connector: ConnectorSpec,
                    template: TemplateSpec | None = None) -> dict[str, Any]:
    """An outbox row's ``payload``: what the dispatcher needs besides the body
    (the provider's template code, the HTML part, the template parameters);
    rule steps and approval notices write it alike."""
    payload: dict[str, Any] = {"template": template_id, "connector_type": connector.type}
    code = provider_template_code(template, connector)
    if code:
        payload["template_code"] = code
    if message.html is not None:
        payload["html"] = message.html
    if message.params:
        payload["params"] = dict(message.params)
    return payload


def row_for(item: OutboxItem, message: RenderedMessage, connector: ConnectorSpec, now: datetime,
            template: TemplateSpec | None = None) -> dict[str, Any]:
    """The outbox row (naive UTC times) for a rendered ``item``."""
    stamp = to_db_time(now)
    payload = message_payload(item.template_id, message, connector, template)
    if item.extra:
        payload.update(item.extra)
    return {
        "channel": item.channel, "connector": connector.id, "recipient": item.to,
        "subject": (message.subject or None) and message.subject[:255], "body": message.body,
        "payload": payload, "idempotency_key": item.idempotency_key, "delivery_class": item.delivery_class,
        "status": QUEUED, "attempts": 0, "next_attempt_at": stamp, "rule_id": item.rule_id,
        "journey_id": item.journey_id, "created_at": stamp, "customer_id": item.customer_id,
        "template_id": item.template_id,
    }


def _template(definitions: DefinitionSet | None, template_id: str) -> Any:
    if definitions is None:
        raise OutboxError("enqueue needs the definitions (templates and connectors)")
    spec = definitions.templates.get(template_id)
    if spec is None:
        raise OutboxError(f"unknown template `{template_id}`")
    return spec


def enqueue(
    session: Session, *, channel: str, to: str, template_id: str, context: Mapping[str, Any], now: datetime,
    idempotency_key: str, delivery_class: str = "transactional", connector: str | None = None,
    rule_id: str | None = None, journey_id: int | None = None, definitions: DefinitionSet | None = None,
    customer_id: int | None = None,
) -> int | None:
    """Render ``template_id`` for ``channel`` and queue one message to ``to``
    in the caller's transaction, due at ``now`` (aware).

    Returns the outbox id, or None when ``idempotency_key`` was already queued
    (nothing is written then). Consent and caps are the caller's business:
    approval notices to staff need none, rule steps check them before calling.

    Raises:
        OutboxError: unknown template, or no connector for the channel.
        TemplateRenderError: the template does not render with ``context``.
    """
    spec = _template(definitions, template_id)
    assert definitions is not None
    conn = pick_connector(definitions, channel, connector)
    item = OutboxItem(channel=channel, to=to, template_id=template_id, context=context,
                      idempotency_key=idempotency_key, delivery_class=delivery_class, connector=conn.id,
                      rule_id=rule_id, journey_id=journey_id, customer_id=customer_id)
    message = render(spec, context, channel=channel)
    return outbox_repo.insert_message(session, row_for(item, message, conn, now, spec))


def enqueue_many(session: Session, items: Sequence[OutboxItem], *, now: datetime,
                 definitions: DefinitionSet) -> list[str]:
    """Queue many messages in one executemany (a journey batch); rows whose
    idempotency key exists are skipped. Returns the keys actually inserted.

    Raises:
        OutboxError, TemplateRenderError: as :func:`enqueue`, for the first bad item.
    """
    rows = []
    connectors: dict[tuple[str, str | None], ConnectorSpec] = {}
    for item in items:
        spec = _template(definitions, item.template_id)
        key = (item.channel, item.connector)
        conn = connectors.get(key)
        if conn is None:
            conn = connectors[key] = pick_connector(definitions, item.channel, item.connector)
        rows.append(row_for(item, render(spec, item.context, channel=item.channel), conn, now, spec))
    return outbox_repo.insert_messages(session, rows)


def deliver_log(session: Session, now: datetime, limit: int = 1000, *, definitions: DefinitionSet) -> int:
    """Deliver queued rows of ``log`` connectors that are due at ``now``: the
    row is the delivery, so they become ``sent``. Returns how many."""
    log_ids = [c.id for c in definitions.connectors.values() if c.type == "log"]
    return outbox_repo.mark_sent(session, connectors=log_ids, now=to_db_time(now), limit=limit)
