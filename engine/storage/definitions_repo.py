"""Versioned storage of published definitions (forms, workflows, rules, ...).

A definition's identity is (kind, def_id); each publish of a changed body adds
version latest+1 and leaves older versions untouched, because running
instances stay on the version they started with. "Changed" means a different
hash of the canonical JSON, so re-publishing an unchanged file is a no-op and
key order or whitespace in the YAML never makes a new version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, true
from sqlalchemy.orm import Session

from engine.storage.models import Definition
from engine.storage.times import from_db_time, to_db_time

PublishStatus = Literal["new", "changed", "unchanged"]


@dataclass(frozen=True, slots=True)
class PublishedChange:
    """What publishing did to one definition."""

    kind: str
    def_id: str
    version: int
    status: PublishStatus


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """One stored version of a definition, detached from the database session."""

    kind: str
    def_id: str
    version: int
    content_hash: str
    body: dict[str, Any]
    source_file: str | None
    published_at: datetime  # aware UTC
    published_by: str | None
    is_latest: bool


def canonical_json(body: Any) -> str:
    """The canonical JSON text of a definition body: sorted keys, no spaces, UTF-8.

    ``default=str`` covers YAML dates/datetimes, which JSON has no type for.
    """
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def canonical_hash(body: Any) -> str:
    """SHA-256 hex digest of ``canonical_json(body)``: equal bodies, equal hashes."""
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def publish_definitions(
    session: Session,
    docs: Sequence[tuple[str, str, dict[str, Any], str]],
    *,
    now: datetime,
    by: str | None,
) -> list[PublishedChange]:
    """Store ``docs`` (kind, def_id, body, source_file) as new versions where changed.

    New definitions get version 1, changed ones latest+1, unchanged ones keep
    their version. Runs inside the caller's transaction and only flushes: the
    caller commits, or rolls back to make a failed batch leave nothing behind.
    Two publishers racing on the same definition make one of them fail on the
    (kind, def_id, version) unique key rather than silently interleave.

    Raises:
        ValueError: if the batch holds the same (kind, def_id) twice; which one
            should win would be a guess.
    """
    seen: set[tuple[str, str]] = set()
    for kind, def_id, _body, _source in docs:
        if (kind, def_id) in seen:
            raise ValueError(f"{kind} `{def_id}` appears more than once in one publish")
        seen.add((kind, def_id))

    published_at = to_db_time(now)
    changes: list[PublishedChange] = []
    for kind, def_id, body, source_file in docs:
        content_hash = canonical_hash(body)
        latest = _latest_row(session, kind, def_id)
        if latest is not None and latest.content_hash == content_hash:
            changes.append(PublishedChange(kind, def_id, latest.version, "unchanged"))
            continue
        version = 1 if latest is None else latest.version + 1
        if latest is not None:
            # Clear the flag before inserting: the partial unique index allows
            # only one latest row per (kind, def_id) at any moment.
            latest.is_latest = False
            session.flush()
        session.add(
            Definition(
                kind=kind,
                def_id=def_id,
                version=version,
                is_latest=True,
                content_hash=content_hash,
                body=body,
                source_file=source_file,
                published_at=published_at,
                published_by=by,
            )
        )
        session.flush()
        changes.append(
            PublishedChange(kind, def_id, version, "new" if latest is None else "changed")
        )
    return changes


def list_definitions(session: Session, kind: str | None = None) -> list[StoredDefinition]:
    """The latest version of every definition (of ``kind`` if given), by kind and id."""
    stmt = select(Definition).where(Definition.is_latest == true())
    if kind is not None:
        stmt = stmt.where(Definition.kind == kind)
    stmt = stmt.order_by(Definition.kind, Definition.def_id)
    return [_stored(row) for row in session.scalars(stmt)]


def get_definition(
    session: Session, kind: str | None, def_id: str, version: int | None = None
) -> StoredDefinition | None:
    """One definition version (latest if ``version`` is None), or None if absent.

    ``kind=None`` looks ``def_id`` up across kinds (ids are usually unique
    across kinds; if not, the lowest kind name wins, deterministically).
    """
    stmt = select(Definition).where(Definition.def_id == def_id)
    if kind is not None:
        stmt = stmt.where(Definition.kind == kind)
    if version is None:
        stmt = stmt.where(Definition.is_latest == true())
    else:
        stmt = stmt.where(Definition.version == version)
    row = session.scalars(stmt.order_by(Definition.kind).limit(1)).first()
    return None if row is None else _stored(row)


def definition_versions(session: Session, kind: str, def_id: str) -> list[StoredDefinition]:
    """Every stored version of one definition, oldest first."""
    stmt = (
        select(Definition)
        .where(Definition.kind == kind, Definition.def_id == def_id)
        .order_by(Definition.version)
    )
    return [_stored(row) for row in session.scalars(stmt)]


def _latest_row(session: Session, kind: str, def_id: str) -> Definition | None:
    stmt = select(Definition).where(
        Definition.kind == kind, Definition.def_id == def_id, Definition.is_latest == true()
    )
    return session.scalars(stmt).first()


def _stored(row: Definition) -> StoredDefinition:
    return StoredDefinition(
        kind=row.kind,
        def_id=row.def_id,
        version=row.version,
        content_hash=row.content_hash,
        body=row.body,
        source_file=row.source_file,
        published_at=from_db_time(row.published_at),
        published_by=row.published_by,
        is_latest=row.is_latest,
    )
