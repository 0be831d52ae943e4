"""Writing the append-only audit log.

Entries are only ever inserted: the database itself rejects UPDATE and DELETE
on ``audit_log`` (triggers in migration 0001), so history cannot be rewritten
by any client, including this code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sqlalchemy import insert

from engine.storage.models import AuditEntry
from engine.storage.times import to_db_time


_INSERT = insert(AuditEntry.__table__).returning(AuditEntry.__table__.c.id)


def append_audit(
    session: Session,
    *,
    at: datetime,
    actor: str | None,
    action: str,
    entity_type: str,
    entity_id: str | int | None,
    diff: dict[str, Any] | None,
) -> int:
    """Add one audit entry to the caller's transaction; returns its id.

    ``at`` is an aware datetime (the caller's ``now``); ``entity_id`` is stored
    as text so any kind of key fits. The entry commits or rolls back with the
    change it describes. One Core INSERT: this is on every write's path.
    """
    params = {"at": to_db_time(at), "actor": actor, "action": action, "entity_type": entity_type,
              "entity_id": None if entity_id is None else str(entity_id), "diff": diff}
    return int(session.connection().execute(_INSERT, params).scalar_one())
