"""Publishing definitions: validate everything first, then store all of it in
one transaction, or nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Sequence

from .definitions.errors import DefinitionsInvalid
from .definitions.loader import DefinitionSet, load_paths
from .storage.audit import append_audit
from .storage.database import transaction
from .storage.definitions_repo import PublishedChange, publish_definitions

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


@dataclass(frozen=True)
class PublishReport:
    definitions: DefinitionSet
    changes: tuple[PublishedChange, ...]

    def count(self, status: str) -> int:
        return sum(1 for c in self.changes if c.status == status)


def publish_paths(
    session_factory: sessionmaker[Session], paths: Sequence[str | os.PathLike], *, now: datetime,
    by: str | None = None,
) -> PublishReport:
    """Load ``paths`` as one set and store every definition, versioned.

    Raises:
        DefinitionsInvalid: with every problem found; nothing was stored.
    """
    definitions = load_paths(paths).raise_for_errors()
    return publish_set(session_factory, definitions, now=now, by=by)


def sync_definitions(session: Session, definitions: DefinitionSet, *, now: datetime) -> None:
    from engine.campaigns.service import sync_definitions as sync_campaigns

    sync_campaigns(session, definitions, now=now)


def publish_set(
    session_factory: sessionmaker[Session], definitions: DefinitionSet, *, now: datetime, by: str | None = None,
) -> PublishReport:
    """Store an already loaded, valid set in one transaction."""
    docs = [(d.kind, d.id, dict(d.body), d.file) for d in definitions.documents]
    with transaction(session_factory) as session:
        changes = publish_definitions(session, docs, now=now, by=by)
        sync_definitions(session, definitions, now=now)  # issue 14: campaign definitions → campaign rows
        changed = [[c.kind, c.def_id, c.version, c.status] for c in changes if c.status != "unchanged"]
        if changed:  # who put which rule, form or workflow version live (issue 16)
            append_audit(session, at=now, actor=by, action="definitions.published", entity_type="definitions",
                         entity_id=None, diff={"changes": changed})
    return PublishReport(definitions, tuple(changes))


__all__ = ["DefinitionsInvalid", "PublishReport", "publish_paths", "publish_set"]
