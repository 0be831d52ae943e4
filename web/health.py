"""``/healthz`` and ``/readyz`` (issue 17): for load balancers and orchestrators.

``/healthz`` answers 200 while the process serves requests; it touches no
database, so a slow database never gets a healthy process killed.
``/readyz`` answers 200 only when this process can do its work: the database
answers, its schema is at the newest migration, the broker (when
``PROMOFLOW_BROKER_URL`` is set) accepts a connection, and the scheduler's
leadership can be read (who holds it is informative, never a failure). 503
otherwise. No login; the bodies name checks and states, never URLs or secrets.
"""

from __future__ import annotations

import fcntl
import os
import socket
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import Engine

from . import services
from .leader import LOCK_NAME, LeaderLock, schema_lock_key

bp = Blueprint("health", __name__)

BROKER_TIMEOUT = 2.0


def leader_status(engine: Engine) -> dict[str, Any]:
    """Whether some process is the active scheduler, and which if knowable.

    PostgreSQL: the backend pid holding the advisory lock (``pg_locks``).
    SQLite: the lock file beside the database is probed with a non-blocking
    shared ``flock`` (released at once) and names the pid written into it."""
    from engine.storage.ops_repo import advisory_lock_holder

    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            key = schema_lock_key(conn, LOCK_NAME)
        pid = advisory_lock_holder(engine, key)
        return {"held": pid is not None, "holder": f"postgresql backend {pid}" if pid else None}
    path = LeaderLock(engine)._sqlite_path()
    if not path.is_file():
        return {"held": False, "holder": None}
    with open(path) as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            written = handle.read().strip()
            return {"held": True, "holder": f"pid {written}" if written.isdigit() else "unknown"}
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return {"held": False, "holder": None}


def _broker_check(url: str) -> dict[str, Any]:
    """A TCP connection to the broker's host and port (Redis 6379, AMQP 5672
    by default): enough to tell "down" from "up" without a client library."""
    parts = urlsplit(url)
    default_port = {"redis": 6379, "rediss": 6380, "amqp": 5672, "amqps": 5671}.get(parts.scheme)
    if not parts.hostname or default_port is None:
        return {"ok": False, "error": f"unsupported broker scheme `{parts.scheme}`"}
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=BROKER_TIMEOUT):
            pass
    except OSError as exc:
        return {"ok": False, "scheme": parts.scheme, "error": type(exc).__name__}
    return {"ok": True, "scheme": parts.scheme}


def readiness(engine: Engine, broker_url: str | None) -> tuple[bool, dict[str, Any]]:
    """Run every check; ``(ready, body)``."""
    from engine.storage.migrate import current_revision, head_revision
    from engine.storage.ops_repo import ping

    checks: dict[str, Any] = {}
    try:
        ping(engine)
        checks["database"] = {"ok": True, "backend": engine.dialect.name}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = {"ok": False, "backend": engine.dialect.name, "error": type(exc).__name__}
    if checks["database"]["ok"]:
        head = head_revision()
        try:
            current = current_revision(engine)
            checks["migrations"] = {"ok": current == head, "current": current, "head": head}
        except Exception as exc:  # noqa: BLE001
            checks["migrations"] = {"ok": False, "current": None, "head": head, "error": type(exc).__name__}
        try:
            checks["scheduler"] = {"ok": True, **leader_status(engine)}
        except Exception:  # noqa: BLE001 - leadership unknown is informative only
            checks["scheduler"] = {"ok": True, "held": None, "holder": "unknown"}
    else:
        checks["migrations"] = {"ok": False, "skipped": "database unreachable"}
        checks["scheduler"] = {"ok": True, "held": None, "holder": "unknown"}
    if broker_url:
        checks["broker"] = _broker_check(broker_url)
    else:
        checks["broker"] = {"ok": True, "skipped": "PROMOFLOW_BROKER_URL not set: tasks run in-process"}
    ready = all(check["ok"] for check in checks.values())
    return ready, {"status": "ready" if ready else "not ready", "checks": checks}


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    return jsonify({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    svc = services()
    ready, body = readiness(svc.db_engine, svc.settings.broker_url)
    return jsonify(body), 200 if ready else 503
