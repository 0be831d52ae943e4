"""``promoflow backup`` / ``promoflow restore`` (issue 17).

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a
consistent snapshot page by page while the app keeps running (readers and the
writer are not stopped; WAL mode). Restore uses the same API in the other
direction, into the live file, so open connections see the restored data.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean --if-exists``
from PATH (a clear error when they are missing). A URL with a
``search_path`` option is dumped and restored as that one schema. The password
travels in ``PGPASSWORD``, never on a command line other users can read.

Restore refuses a target holding any rows unless ``force`` is given.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import Engine, inspect, select, table, literal_column
from sqlalchemy.engine import URL

from engine.private_files import FOLDER_MODE, private_file, write_private
from engine.storage.database import make_engine, normalize_url


class BackupError(RuntimeError):
    """A backup or restore cannot be done; the message says why and what to do."""


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database).expanduser().resolve()


def _libpq(url: URL) -> tuple[str, dict[str, str], str | None]:
    """(connection URI without password, environment, schema from ``options=-csearch_path=…``)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    schema = None
    options = url.query.get("options")
    for option in ([options] if isinstance(options, str) else list(options or ())):
        for part in option.split():
            if part.startswith("-csearch_path="):
                schema = part.split("=", 1)[1].split(",")[0].strip() or None
    return plain.render_as_string(hide_password=False), env, schema


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"`{name}` was not found on PATH; install the PostgreSQL client tools "
                          f"(Debian/Ubuntu: apt install postgresql-client) of the server's major version")
    return path


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[:2000]}")


def has_rows(engine: Engine) -> bool:
    """True when any table of the database (of its search path) holds a row."""
    names = [n for n in inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.connect() as conn:
        for name in names:
            if conn.execute(select(literal_column("1")).select_from(table(name)).limit(1)).first():
                return True
    return False


def backup(database_url: str, dest: str | os.PathLike[str]) -> Path:
    """Write a backup of the database to ``dest`` (a new file; an existing one is replaced atomically)."""
    url = normalize_url(database_url)
    target = Path(dest).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # A backup holds every phone number: 0600 from its first byte (issue 16).
    write_private(partial, b"")
    if url.get_backend_name() == "sqlite":
        source_path = _sqlite_path(url)
        if not source_path.is_file():
            raise BackupError(f"{source_path}: no such database file")
        source = sqlite3.connect(source_path)
        copy = sqlite3.connect(partial)
        try:
            with copy:
                source.backup(copy)
        finally:
            copy.close()
            source.close()
    else:
        uri, env, schema = _libpq(url)
        args = [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}"]
        if schema:
            args.append(f"--schema={schema}")
        _run([*args, f"--dbname={uri}"], env)
    private_file(partial)
    os.replace(partial, target)
    return target


def restore(database_url: str, src: str | os.PathLike[str], *, force: bool = False) -> None:
    """Replace the database's content by the backup ``src``.

    Raises:
        BackupError: ``src`` is missing, the target holds rows and ``force``
            is not set, or a tool failed.
    """
    url = normalize_url(database_url)
    source = Path(src).expanduser().resolve()
    if not source.is_file():
        raise BackupError(f"{source}: no such backup file")
    engine = make_engine(url)
    try:
        if not force and has_rows(engine):
            raise BackupError("the database is not empty; pass --force to replace its content with the backup")
    finally:
        engine.dispose()
    if url.get_backend_name() == "sqlite":
        target_path = _sqlite_path(url)
        backup_db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            if backup_db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise BackupError(f"{source}: not an intact SQLite database")
            live = sqlite3.connect(target_path, timeout=30)
            try:
                backup_db.backup(live)
            finally:
                live.close()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source}: {exc}") from None
        finally:
            backup_db.close()
        return
    uri, env, _schema = _libpq(url)
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", f"--dbname={uri}", str(source)], env)


__all__ = ["BackupError", "backup", "has_rows", "restore"]
