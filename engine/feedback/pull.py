"""Pulling feedback by cursor (the scheduler's ``feedback`` tick).

One pull stores the items of one page *and* the cursor after them in one
transaction: a crash before the commit leaves the old cursor and no items (the
page is fetched again), a crash after it leaves both (nothing is fetched
twice). Items already stored (same source and id) are skipped by their unique
key, so even a provider that repeats items across pages stores each once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from engine.definitions.loader import DefinitionSet
from engine.feedback.service import from_item, resolve, store
from engine.feedback.tagging import TagRules
from engine.ports import Connector, ConnectorError, FeedbackItem, UnsupportedOperation
from engine.storage import feedback_repo as repo
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("promoflow.feedback")

__all__ = ["PullReport", "pull_all", "pull_once"]


@dataclass
class PullReport:
    pages: int = 0
    stored: int = 0
    duplicates: int = 0
    invalid: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def pull_once(session_factory: sessionmaker[Session], source: str, connector: Connector, *, now: datetime,
              definitions: DefinitionSet | None = None, rules: TagRules | None = None,
              report: PullReport | None = None) -> tuple[PullReport, bool]:
    """Fetch one page after the stored cursor and store it with the next
    cursor. Returns the report and whether there may be more (the cursor moved
    and the page was not empty).

    Items the connector marks invalid (``kind == "invalid"``) are not stored as
    feedback; a ``feedback.invalid`` event records their id and errors so
    nothing disappears silently.

    Raises:
        ConnectorError: the provider failed; nothing was stored, the cursor stays.
    """
    report = report or PullReport()
    rules = rules or TagRules.from_specs(definitions.feedback_tags.values() if definitions else ())
    with session_factory() as session:
        cursor = repo.get_cursor(session, source)
    items, next_cursor = connector.pull_feedback(cursor)
    with transaction(session_factory) as session:
        for item in items:
            _store_item(session, source, item, now=now, definitions=definitions, rules=rules, report=report)
        repo.set_cursor(session, source, next_cursor, to_db_time(now))
    report.pages += 1
    return report, bool(items) and next_cursor != cursor


def _store_item(session: Session, source: str, item: FeedbackItem, *, now: datetime,
                definitions: DefinitionSet | None, rules: TagRules, report: PullReport) -> None:
    if item.kind == "invalid":
        report.invalid += 1
        append_event(session, "feedback.invalid", "feedback_source", source,
                     {"source": source, "item_id": item.provider_id, "errors": list(item.data.get("errors", []))},
                     now)
        return
    incoming, refs = from_item(item, source=source, received_at=now)
    incoming = resolve(session, incoming, definitions=definitions, sender=item.sender, refs=refs)
    result = store(session, incoming, rules)
    if result.status == "stored":
        report.stored += 1
    else:
        report.duplicates += 1


def pull_all(session_factory: sessionmaker[Session], connectors: Mapping[str, Connector], *, now: datetime,
             definitions: DefinitionSet | None = None, max_pages: int = 20) -> PullReport:
    """Pull every connector that offers ``pull_feedback`` until it has no more
    (at most ``max_pages`` pages each per call); one failing source is
    reported and does not stop the others."""
    report = PullReport()
    rules = TagRules.from_specs(definitions.feedback_tags.values() if definitions else ())
    for source, connector in connectors.items():
        try:
            for _ in range(max_pages):
                _, more = pull_once(session_factory, source, connector, now=now, definitions=definitions,
                                    rules=rules, report=report)
                if not more:
                    break
        except UnsupportedOperation:
            continue
        except ConnectorError as exc:
            log.warning("feedback pull %s failed: %s", source, exc)
            report.errors[source] = f"{type(exc).__name__}: {exc}"
    return report

