"""Admission control for writing requests under ``promoflow serve``.

On SQLite every write transaction of the process already queues on one
writer lock (``engine.storage.database.writer_lock``). Letting four server
threads run four submissions at once therefore buys no parallelism, only
contention: each SQLite call inside the locked section releases the GIL, a
thread still parsing or validating takes it, and the lock holder waits for
it back while the others pile up behind the lock. Measured with
``bench/form_submit.py`` (4 waitress threads, 8 clients, 2 cores): about
4.5 ms of server CPU per submission without a gate, 3.5-3.9 ms with one
writing request at a time, +10-20 % submissions per second.

The gate lets at most ``limit`` POST/PUT/PATCH/DELETE requests into the
app at once (sign-in and password posts excepted, see ``UNGATED_PATHS``); reads (pages, lists, exports, files) are never held up by it,
and waitress has read the whole request body before the app is called, so a
slow client does not hold a place either. PostgreSQL writes in parallel for
real, so there the default is no gate. It is a server concern: the app
factory (tests, other WSGI servers) is unchanged.

Under gunicorn (``promoflow serve --workers N``, issue 17) the writer lock of
one process no longer covers the others, so the gate also holds an
exclusive ``flock`` on one of ``limit`` slot files beside the database
(``lock_dir``): at most ``limit`` writing requests in all processes together.
The kernel drops a dead process's lock, so a killed worker never wedges it.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Posts that never wait for (or hold) the gate: signing in and changing a
#: password spend most of their time in argon2 (tens of ms of CPU by design),
#: which would keep every form submission waiting behind a login flood; their
#: own writes are one short transaction each (the throttle row, the audit
#: entry), queued on the SQLite writer lock like any other.
UNGATED_PATHS = frozenset({"/login", "/account/password"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def default_limit(database_url: str) -> int:
    """1 writing request at a time on SQLite (its writes are serial anyway); 0 (no gate) otherwise."""
    return 1 if database_url.startswith("sqlite") else 0


class WriteGate:
    """WSGI middleware: at most ``limit`` writing requests in the app at once
    (in this process; with ``lock_dir``, in every process sharing it)."""

    def __init__(self, app: WSGIApp, limit: int, *, lock_dir: str | os.PathLike | None = None):
        if limit < 1:
            raise ValueError("a write gate needs a limit of at least 1")
        self.app = app
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._lock_dir = Path(lock_dir) if lock_dir else None
        self._next = 0
        if self._lock_dir is not None:
            self._lock_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _process_slot(self) -> Iterator[None]:
        """An exclusive ``flock`` on a free slot file (waits on one when all are taken)."""
        if self._lock_dir is None:
            yield
            return
        handles = []
        try:
            for index in range(self.limit):
                handle = open(self._lock_dir / f"write-gate.{index}.lock", "a+")
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                handles.append(handle)
                break
            if not handles:
                self._next = (self._next + 1) % self.limit
                handle = open(self._lock_dir / f"write-gate.{self._next}.lock", "a+")
                handles.append(handle)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield
        finally:
            for handle in handles:
                handle.close()  # closing the file releases the flock

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD", "GET").upper() not in WRITE_METHODS
                or environ.get("PATH_INFO", "") in UNGATED_PATHS):
            return self.app(environ, start_response)
        with self._slots, self._process_slot():
            # The view runs inside ``app(...)``; a streamed body (none of our
            # writing endpoints streams) would be iterated after the release.
            return self.app(environ, start_response)


def gate(app: WSGIApp, limit: int, *, lock_dir: str | os.PathLike | None = None) -> WSGIApp:
    """``app`` behind a :class:`WriteGate`, or ``app`` itself for ``limit`` 0."""
    return WriteGate(app, limit, lock_dir=lock_dir) if limit > 0 else app
