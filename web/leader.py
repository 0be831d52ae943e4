"""One active scheduler per database.

PostgreSQL: a session-level advisory lock held on a dedicated connection (it
is released by the server when that connection dies, so a killed worker hands
over by itself). SQLite: an exclusive ``flock`` on a file beside the database
(released by the kernel when the process dies). Everyone else stands by and
tries again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

#: The advisory lock key: a stable 63-bit number derived from a name.
LOCK_NAME = "promoflow.scheduler"


def lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def schema_lock_key(conn: Any, name: str = LOCK_NAME) -> int:
    """The advisory lock key of ``name`` for the schema ``conn`` works in:
    advisory locks are server-wide, so two installations in two schemas of
    one PostgreSQL (or two test runs) must not elect one scheduler between them."""
    schema = conn.execute(text("SELECT current_schema()")).scalar() or "public"
    return lock_key(name if schema == "public" else f"{name}:{schema}")


class LeaderLock:
    """``acquire()`` → True when this process is the active scheduler.

    Non-blocking: a standby calls ``acquire()`` again later. ``release()``
    gives leadership up (also done by the OS/server when the process dies).
    """

    def __init__(self, engine: Engine, *, name: str = LOCK_NAME, lock_dir: str | os.PathLike | None = None):
        self._engine = engine
        self._name = name
        self._key = lock_key(name)
        self._conn: Any = None
        self._file: Any = None
        self._lock_dir = Path(lock_dir) if lock_dir else None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def _sqlite_path(self) -> Path:
        database = self._engine.url.database or "memory"
        base = self._lock_dir or (Path(database).resolve().parent if database not in ("", ":memory:") else Path("."))
        return base / f"{Path(database).name}.{self._name}.lock"

    def acquire(self) -> bool:
        if self.held:
            return True
        if self._engine.dialect.name == "postgresql":
            conn = self._engine.connect()
            try:
                self._key = schema_lock_key(conn, self._name)
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
                conn.commit()
            except Exception:
                conn.close()
                raise
            if not got:
                conn.close()
                return False
            self._conn = conn
            return True
        path = self._sqlite_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return True

    def still_held(self) -> bool:
        """For PostgreSQL, check the lock's connection is alive (a lost
        connection means the lock is gone and another worker may lead)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
                return True
            except Exception:
                self._conn = None
                return False
        return self._file is not None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._file is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            finally:
                self._file.close()
                self._file = None
