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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
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
    """WSGI middleware: at most ``limit`` writing requests in the app at once."""

    def __init__(self, app: WSGIApp, limit: int):
        if limit < 1:
            raise ValueError("a write gate needs a limit of at least 1")
        self.app = app
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD", "GET").upper() not in WRITE_METHODS
                or environ.get("PATH_INFO", "") in UNGATED_PATHS):
            return self.app(environ, start_response)
        with self._slots:
            # The view runs inside ``app(...)``; a streamed body (none of our
            # writing endpoints streams) would be iterated after the release.
            return self.app(environ, start_response)


def gate(app: WSGIApp, limit: int) -> WSGIApp:
    """``app`` behind a :class:`WriteGate`, or ``app`` itself for ``limit`` 0."""
    return WriteGate(app, limit) if limit > 0 else app
