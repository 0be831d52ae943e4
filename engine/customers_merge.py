"""Merging two stored customers (issue 12): the same person came in twice
(a till knew the phone, the shop the e-mail), and rules and reports should
see one.

``merge_customers(session, survivor, loser)`` moves everything of the loser
to the survivor in one transaction — orders, coupons, journeys, outbox
messages, feedback, consents, tags, identities, events and segment memory —
fills the survivor's empty profile fields from the loser, keeps the loser's
phone, e-mail and external id as aliases (``customer_identities``) so they
still find the survivor, recounts the survivor's orders and rescores its
RFM and segment, deletes the loser, writes an audit entry with what moved
and emits ``customer.updated`` (``reason: merge``) for rules that listen.

``once_per`` holds across the merge: journeys are keyed (rule, subject,
period); a loser journey whose key the survivor already holds is not moved,
and running loser journeys of a rule the survivor already runs are exited
(:func:`engine.storage.merge_repo.move_journeys`), so the survivor is never
in a rule twice because of the merge, nor entered again in a window either
record was already in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.customers_in import EVENT_UPDATED, PROFILE_FIELDS
from engine.storage import customers_repo, identity_repo, merge_repo, points_repo
from engine.storage.audit import append_audit
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["MergeError", "MergeReport", "merge_customers"]

#: Columns filled from the loser when the survivor has none.
_FILL = (*PROFILE_FIELDS, "account_manager_id")


class MergeError(ValueError):
    """The merge cannot be done; ``code`` is ``not_found``, ``same_customer`` or
    ``conflict`` (rows that exist once per customer on both sides)."""

    def __init__(self, code: str, message: str, customer_id: int | None = None):
        super().__init__(message)
        self.code = code
        self.customer_id = customer_id


@dataclass
class MergeReport:
    survivor: int
    merged: int
    moved: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.survivor, "merged": self.merged, "moved": dict(self.moved)}


def merge_customers(session: Session, survivor: int, loser: int, *, now: datetime, actor: str | None) -> MergeReport:
    """Merge customer ``loser`` into ``survivor`` (see the module notes).

    Raises:
        MergeError: either customer is unknown, or they are the same.
    """
    if survivor == loser:
        raise MergeError("same_customer", "a customer cannot be merged into itself")
    db_now = to_db_time(now)
    rows = merge_repo.lock_customers(session, [survivor, loser])
    for cid in (survivor, loser):
        if cid not in rows:
            raise MergeError("not_found", f"no customer {cid}", cid)
    keep, gone = rows[survivor], rows[loser]
    report = MergeReport(survivor, loser)
    try:
        report.moved.update(merge_repo.move_rows(session, survivor, loser))
    except merge_repo.MoveConflict as exc:
        raise MergeError("conflict", f"both customers have rows in `{exc.table}` that may exist once per "
                         f"customer; resolve them first") from None
    report.moved["journeys"], report.moved["journeys_exited"] = merge_repo.move_journeys(session, survivor, loser)
    report.moved["consents"] = merge_repo.move_consents(session, survivor, loser)
    report.moved["tags"] = merge_repo.move_tags(session, survivor, loser)
    merge_repo.move_segment_memory(session, survivor, loser)

    values: dict[str, Any] = {f: gone[f] for f in _FILL if keep.get(f) is None and gone.get(f) is not None}
    if gone.get("registered_at") is not None and keep.get("registered_at") is not None:
        values["registered_at"] = min(gone["registered_at"], keep["registered_at"])
    if gone.get("attrs"):
        values["attrs"] = {**gone["attrs"], **(keep.get("attrs") or {})}
    aliases: list[tuple[str, str, int]] = []
    for kind in identity_repo.COLUMN_KINDS:
        theirs = gone.get(kind)
        if theirs is None:
            continue
        if keep.get(kind) is None:
            values[kind] = theirs
        elif theirs != keep[kind]:
            aliases.append((kind, theirs.lower() if kind == "email" else theirs, survivor))
    # The loser's row goes first: external_id is unique, and the survivor may take it over.
    merge_repo.delete_customer(session, loser)
    if values:
        identity_repo.set_customer_values(session, [{"cid": survivor, **values}], db_now)
    identity_repo.add_identities(session, aliases, db_now)
    # The survivor's aggregates from the orders it now has, and its RFM scores and segment with them
    # (the one formula of orders coming in: paid and partially refunded orders, net amounts).
    customers_repo.recompute_aggregates(session, db_now=db_now, customer_ids={survivor})
    append_event(session, EVENT_UPDATED, "customer", survivor,
                 {"customer_id": survivor, "reason": "merge", "merged": loser, "fields": sorted(values)}, now)
    points_repo.refresh_customers(session, {survivor}, db_now)  # the loser's points lots moved over (issue 13)
    append_audit(session, at=now, actor=actor, action="customer.merged", entity_type="customer",
                 entity_id=survivor, diff={"merged": loser, "moved": report.moved,
                                           "filled": sorted(values), "aliases": [a[:2] for a in aliases],
                                           "merged_customer": _snapshot(gone)})
    return report


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    """The merged-away customer as JSON-safe values, for the audit trail."""
    out = {}
    for key, value in row.items():
        out[key] = value.isoformat() if hasattr(value, "isoformat") else (str(value) if value is not None and
                                                                            not isinstance(value, (int, str, dict, list, bool))
                                                                            else value)
    return out
