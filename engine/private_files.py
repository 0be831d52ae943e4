"""Owner-only files and folders (issue 16, personal data at rest).

Why: the instance folder holds the SQLite database (and its WAL and SHM),
uploaded files, backups and key files, all of them personal data or the keys
to it. Created with the usual umask they were world-readable (0644); a
colleague with a shell on the same machine could copy millions of phone
numbers. Everything here is created (or tightened, for an instance made by an
older version) as 0600 files in 0700 folders.

Two layers: :func:`restrict_umask` makes every file the process creates
owner-only (SQLite creates its WAL and SHM itself, with the database file's
mode), and the explicit ``chmod`` calls fix what already exists.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["FILE_MODE", "FOLDER_MODE", "PRIVATE_UMASK", "private_dir", "private_file", "restrict_umask",
           "secure_sqlite_files", "write_private"]

FILE_MODE = 0o600
FOLDER_MODE = 0o700
#: Group and others get no bits on anything the process creates.
PRIVATE_UMASK = 0o077


def restrict_umask() -> int:
    """Give new files and folders of this process no group or other bits;
    returns the previous umask. Called once when the app or the CLI starts."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    _chmod(path, FOLDER_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make an existing file 0600 (a missing one is left missing)."""
    _chmod(path, FILE_MODE)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to a new or existing file that is 0600 from its first byte."""
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, raw)
    finally:
        os.close(fd)
    return path


def secure_sqlite_files(database: Path) -> None:
    """Create the SQLite database file as 0600 before SQLite opens it (SQLite
    gives its WAL and SHM the database's mode) and tighten the three files of
    an existing database."""
    if not database.exists():
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    for suffix in ("", "-wal", "-shm", "-journal"):
        _chmod(database.with_name(database.name + suffix), FILE_MODE)


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except PermissionError:  # a file we do not own (a shared folder): not ours to change
        pass
