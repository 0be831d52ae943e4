"""Logging for ``promoflow serve`` and ``promoflow worker`` (issue 17).

One :func:`setup_logging` call configures the root logger: ``text`` lines for
a person at a terminal, or one JSON object per line (``json``) for a log
shipper. Every line carries the request id of the web request it was written
in (``X-Request-Id``, accepted from the client when sane, else generated, and
echoed in the response) or the tick id of the scheduler tick, both kept in
context variables so threads and nested calls need not pass them on.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

request_id: ContextVar[str | None] = ContextVar("promoflow_request_id", default=None)
tick_id: ContextVar[str | None] = ContextVar("promoflow_tick_id", default=None)

#: A client's request id is used as is when it looks like an id (no spaces,
#: quotes or control characters that could forge a log line), else replaced.
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "X-Request-Id"
access_log = logging.getLogger("promoflow.http")


def new_id() -> str:
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``tick_id`` to every record (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.tick_id = tick_id.get()
        return True


#: LogRecord attributes that are not "extra" fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "request_id",
                                                                        "tick_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, ids,
    any ``extra=`` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "tick_id"):
            if getattr(record, key, None):
                out[key] = getattr(record, key)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{key}={getattr(record, key)}" for key in ("request_id", "tick_id") if getattr(record, key, None)]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def resolve_format(value: str | None, stream: Any = None) -> str:
    """``text`` or ``json``; empty: text when ``stream`` is a terminal, json otherwise."""
    if value in ("text", "json"):
        return value
    stream = stream or sys.stderr
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


def setup_logging(log_format: str | None = None, level: str = "INFO", *, stream: Any = None) -> logging.Handler:
    """Replace the root logger's handlers with one writing ``log_format`` lines to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if resolve_format(log_format, stream) == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" noise at INFO
    logging.getLogger("alembic").setLevel(logging.WARNING)  # "Context impl …" on every start
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # "Running job …" twice per tick
    return handler


def init_app(app: Flask) -> None:
    """Accept or make a request id per request, echo it, and log one access line."""

    @app.before_request
    def _start() -> None:
        given = request.headers.get(HEADER, "")
        rid = given if SANE_ID.match(given) else new_id()
        g.request_id = rid
        g.request_id_token = request_id.set(rid)
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = g.get("request_id")
        if rid:
            response.headers[HEADER] = rid
            elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
            access_log.info("%s %s %s", request.method, request.path, response.status_code,
                            extra={"method": request.method, "path": request.path, "status": response.status_code,
                                   "duration_ms": round(elapsed * 1000, 2), "endpoint": request.endpoint})
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            try:
                request_id.reset(token)
            except ValueError:  # set in another context (should not happen); clear instead
                request_id.set(None)


__all__ = ["ContextFilter", "HEADER", "JsonFormatter", "TextFormatter", "init_app", "new_id", "request_id",
           "resolve_format", "setup_logging", "tick_id"]
