"""WeCom customer-contact callbacks become customers, identities and events
(issue 12).

Why: in a private-domain (私域) setup the first thing a shop knows of a
customer is often that they added a staff member on WeCom or joined a
customer group; rules such as the shipped ``community_join`` wait for exactly
that. The callback's fields (decrypted by the connector) arrive here:

* ``Event=change_external_contact``, ``ChangeType=add_external_contact`` (or
  ``add_half_external_contact``): the ``ExternalUserID`` becomes the
  customer's ``wecom_userid`` identity (a customer seen for the first time is
  created and emits ``customer.registered``), and
  ``custom.wecom.contact_added`` is emitted with the staff ``UserID`` and the
  contact-way ``State``.
* ``Event=change_external_chat``, ``ChangeType=update``,
  ``UpdateDetail=add_member``: each external member in ``MemChangeList``
  (external userids start with ``wo``/``wm``; staff members are skipped)
  becomes a customer identity and ``custom.community.joined`` is emitted
  with the ``ChatId``. A callback without ``MemChangeList`` (older WeCom
  versions) names no members and changes nothing.

Each event's idempotency key is built from the connector, the change and
``CreateTime``, so WeCom's retries of a callback store nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from engine.customers_in import CustomerInput, upsert_customers
from engine.events_in import EventInput, post_events

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["CONTACT_ADDED", "GROUP_JOINED", "WecomReport", "apply_wecom_event"]

CONTACT_ADDED = "custom.wecom.contact_added"
GROUP_JOINED = "custom.community.joined"
_ADD_TYPES = ("add_external_contact", "add_half_external_contact")
_EXTERNAL_PREFIXES = ("wo", "wm")


@dataclass
class WecomReport:
    customers_created: list[int] = field(default_factory=list)
    events: list[tuple[str, int, str]] = field(default_factory=list)  # (name, customer, status)


def apply_wecom_event(session: Session, fields: Mapping[str, str], *, connector_id: str,
                      now: datetime) -> WecomReport:
    """Apply one decrypted WeCom event callback in the caller's transaction;
    other events are ignored (an empty report)."""
    report = WecomReport()
    event = fields.get("Event", "")
    created = fields.get("CreateTime", "")
    if event == "change_external_contact" and fields.get("ChangeType") in _ADD_TYPES:
        external = (fields.get("ExternalUserID") or "").strip()
        if external:
            _emit(session, report, [external], CONTACT_ADDED,
                  {"staff_userid": fields.get("UserID", ""), "state": fields.get("State", "")},
                  key=lambda who: f"wecom:{connector_id}:contact:{who}:{created}", connector_id=connector_id,
                  now=now)
    elif event == "change_external_chat" and fields.get("UpdateDetail") == "add_member":
        members = [m.strip() for m in (fields.get("MemChangeList") or "").split(",")]
        joined = [m for m in dict.fromkeys(members) if m.startswith(_EXTERNAL_PREFIXES)]
        chat = fields.get("ChatId", "")
        if joined:
            _emit(session, report, joined, GROUP_JOINED,
                  {"chat_id": chat, "join_scene": fields.get("JoinScene", "")},
                  key=lambda who: f"wecom:{connector_id}:chat:{chat}:{who}:{created}", connector_id=connector_id,
                  now=now)
    return report


def _emit(session: Session, report: WecomReport, externals: list[str], name: str, data: dict[str, str], *,
          key, connector_id: str, now: datetime) -> None:  # type: ignore[no-untyped-def]
    source = f"wecom:{connector_id}"
    outcomes = upsert_customers(session, [CustomerInput(identity={"wecom_userid": e}) for e in externals],
                                now=now, source=source)
    items = []
    for external, outcome in zip(externals, outcomes):
        if outcome.status == "created":
            report.customers_created.append(outcome.customer_id)  # type: ignore[arg-type]
        items.append(EventInput(name=name, customer_id=outcome.customer_id, identity=None,
                                idempotency_key=key(external), data=dict(data)) if outcome.customer_id else None)
    for posted in post_events(session, items, now=now, source=source):
        if posted.customer_id is not None:
            report.events.append((name, posted.customer_id, posted.status))
