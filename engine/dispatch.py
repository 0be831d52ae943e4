"""The dispatcher: delivers due outbox rows through their connectors.

One pass (:meth:`Dispatcher.run_once`):

1. **Claim** due rows (``queued``/``retry``, ``next_attempt_at <= now``) of the
   connectors this dispatcher has, in one transaction that is committed
   *before* any provider is called: PostgreSQL picks them ``FOR UPDATE SKIP
   LOCKED``; SQLite has a single writer, so one ``UPDATE … RETURNING`` is the
   only claimer at a time. Claimed rows are ``sending``, ``claimed_by`` this
   worker, ``attempts + 1``.
2. **Gate**: marketing rows of a customer without a granted consent for the
   channel are ``skipped`` (opt-out re-checked just before sending); marketing
   rows of a connector outside its ``send_window`` (local time) are never
   claimed: they are deferred to the window's next opening.
3. **Send** per connector in chunks of ``max_batch`` and settle each message:
   accepted → ``sent``; retryable → ``retry`` with exponential backoff and
   jitter (``retry_after`` honoured), ``dead`` once the connector's
   ``max_attempts`` is used up; permanent → ``failed``; unknown (the request
   left, no answer) → marketing ``unknown`` (at most once: never resent
   blindly), transactional ``retry`` (at least once). A
   :class:`~engine.ports.ConfigurationError` stops that connector for the
   pass: its unsettled rows go back to ``retry`` after a long backoff with
   the attempt given back, and a ``connector.misconfigured`` event is written.

:meth:`Dispatcher.reap` settles claims of dead workers; :meth:`Dispatcher.resend`
puts a dead letter back in the queue.

Nothing here reads the wall clock: ``now`` is passed in (aware UTC).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from engine.ports import (
    ConfigurationError,
    Connector,
    DeliveryClass,
    Outcome,
    OutgoingMessage,
    SendResult,
)
from engine.storage import dispatch_repo
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

log = logging.getLogger("promoflow.dispatch")

__all__ = ["Backoff", "DispatchReport", "Dispatcher", "dispatch_tick", "next_window_open", "window_open"]

MARKETING = DeliveryClass.MARKETING.value


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits ``base * 2**(n-1)``
    capped at ``cap``, scaled by a random factor in ``[1 - jitter, 1]``; never
    less than the provider's ``retry_after``."""

    base: float = 30.0
    cap: float = 3600.0
    jitter: float = 0.5
    #: After a configuration error: how long the connector's rows wait.
    config_delay: float = 900.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        raw = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        value = raw * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            value = max(value, float(retry_after))
        return value


@dataclass
class DispatchReport:
    """What one pass did (counts of rows by what became of them)."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    deferred: int = 0
    lost_claims: int = 0
    misconfigured: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        for name in ("claimed", "sent", "retried", "dead", "failed", "unknown", "skipped", "deferred",
                     "lost_claims"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.misconfigured.extend(c for c in other.misconfigured if c not in self.misconfigured)


def window_open(window: tuple[time, time] | None, local: datetime) -> bool:
    """Whether ``local`` (a local wall time) falls in ``window`` = (start, end),
    start inclusive, end exclusive; an end before the start spans midnight."""
    if window is None:
        return True
    start, end = window
    t = local.time().replace(tzinfo=None)
    if start == end:
        return True
    if start < end:
        return start <= t < end
    return t >= start or t < end


def next_window_open(window: tuple[time, time], now: datetime, tz: ZoneInfo) -> datetime:
    """The next time (aware, in ``tz``) at or after ``now`` when ``window`` opens."""
    local = now.astimezone(tz)
    candidate = local.replace(hour=window[0].hour, minute=window[0].minute, second=window[0].second,
                              microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate


class Dispatcher:
    """Delivers outbox rows of the connectors it is given (``connector id →
    Connector``). Several dispatchers (threads or processes) may run against
    one database; each row is claimed by one of them at a time.

    ``max_attempts`` / ``send_window`` come from each connector's ``spec`` (a
    :class:`~engine.definitions.specs.ConnectorSpec`) when it has one;
    ``send_window`` is in ``timezone`` and applies to ``window_classes``
    (marketing only by default: a verification code or an approval notice is
    not held back by marketing quiet hours).
    """

    def __init__(self, session_factory: sessionmaker[Session], connectors: Mapping[str, Connector], *,
                 worker_id: str | None = None, timezone: str = "Asia/Shanghai", backoff: Backoff | None = None,
                 rng: random.Random | None = None, default_max_attempts: int = 8,
                 window_classes: Sequence[str] = (MARKETING,),
                 send_windows: Mapping[str, tuple[time, time] | None] | None = None,
                 max_attempts: Mapping[str, int] | None = None) -> None:
        self.session_factory = session_factory
        self.connectors = dict(connectors)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.tz = ZoneInfo(timezone)
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.window_classes = tuple(window_classes)
        self._windows: dict[str, tuple[time, time] | None] = {}
        self._max_attempts: dict[str, int] = {}
        for cid, conn in self.connectors.items():
            spec = getattr(conn, "spec", None)
            self._windows[cid] = getattr(spec, "send_window", None)
            self._max_attempts[cid] = int(getattr(spec, "max_attempts", None) or default_max_attempts)
        self._windows.update(send_windows or {})
        self._max_attempts.update(max_attempts or {})

    # ------------------------------------------------------------------ pass
    def run_once(self, now: datetime, batch: int = 500) -> DispatchReport:
        """Claim up to ``batch`` due rows, send them, record every outcome."""
        report = DispatchReport()
        db_now = to_db_time(now)
        open_connectors = self._open_connectors(now, db_now, report)
        if not open_connectors:
            return report
        with transaction(self.session_factory) as session:
            rows = dispatch_repo.claim(session, worker_id=self.worker_id, now=db_now, limit=batch,
                                       connectors=open_connectors)
        report.claimed = len(rows)
        if not rows:
            return report
        rows = self._gate(rows, db_now, report)
        by_connector: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_connector.setdefault(row["connector"], []).append(row)
        for cid, group in by_connector.items():
            self._send_connector(cid, group, now, db_now, report)
        return report

    def run_until_idle(self, now: datetime, batch: int = 500, max_passes: int = 10_000) -> DispatchReport:
        """Repeat :meth:`run_once` at ``now`` until a pass claims nothing."""
        total = DispatchReport()
        for _ in range(max_passes):
            report = self.run_once(now, batch)
            total.add(report)
            if report.claimed == 0:
                break
        return total

    def _open_connectors(self, now: datetime, db_now: datetime, report: DispatchReport) -> list[str]:
        """Connector ids to claim for; rows of classes held by a closed send
        window are deferred to its next opening instead."""
        result = []
        local = now.astimezone(self.tz)
        for cid in self.connectors:
            window = self._windows.get(cid)
            if window is not None and not window_open(window, local):
                until = to_db_time(next_window_open(window, now, self.tz))
                with transaction(self.session_factory) as session:
                    report.deferred += dispatch_repo.defer_due(
                        session, connector=cid, now=db_now, until=until, delivery_classes=self.window_classes)
            result.append(cid)
        return result

    def _gate(self, rows: list[dict[str, Any]], db_now: datetime, report: DispatchReport) -> list[dict[str, Any]]:
        """Skip marketing rows whose customer has no granted consent for the channel."""
        pairs = {(int(r["customer_id"]), r["channel"]) for r in rows
                 if r["customer_id"] is not None and (r["delivery_class"] or MARKETING) == MARKETING}
        if not pairs:
            return rows
        with self.session_factory() as session:
            out = dispatch_repo.opted_out(session, pairs)
            session.rollback()
        if not out:
            return rows
        keep, skip = [], []
        for row in rows:
            pair = (row["customer_id"], row["channel"])
            if ((row["delivery_class"] or MARKETING) == MARKETING and row["customer_id"] is not None
                    and (int(pair[0]), pair[1]) in out):
                skip.append(self._outcome(row, "skipped", last_error="opted_out: no consent for channel "
                                          f"{row['channel']} at send time"))
            else:
                keep.append(row)
        self._write(skip, report)
        report.skipped += len(skip)
        return keep

    # ------------------------------------------------------------ sending
    def _send_connector(self, cid: str, rows: list[dict[str, Any]], now: datetime, db_now: datetime,
                        report: DispatchReport) -> None:
        connector = self.connectors[cid]
        size = max(1, int(getattr(connector, "max_batch", 1) or 1))
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            messages: list[OutgoingMessage] = []
            outcomes: list[dict[str, Any]] = []
            for row in chunk:
                try:
                    messages.append(OutgoingMessage.from_outbox(row))
                except (ValueError, TypeError) as exc:
                    outcomes.append(self._outcome(row, "failed", last_error=f"bad_payload: {exc}"))
                    report.failed += 1
            if outcomes:
                built = {m.id for m in messages}
                sendable = [r for r in chunk if str(r["id"]) in built]
            else:
                sendable = chunk
            try:
                results = connector.send_batch(messages)
            except ConfigurationError as exc:
                settled = {r.message_id: r for r in exc.results}
                outcomes += self._settle(sendable, settled, db_now, report, missing="config")
                outcomes += self._config_hold(rows[start + size:], db_now)
                self._write(outcomes, report)
                self._alert(cid, exc, now, report)
                return
            except Exception as exc:
                settled = {r.message_id: r for r in getattr(exc, "results", ())}
                missing = "retry" if hasattr(exc, "results") else "unknown"
                log.exception("connector %s failed on a batch of %d", cid, len(messages))
                outcomes += self._settle(sendable, settled, db_now, report, missing=missing,
                                         error=f"connector_error: {type(exc).__name__}: {exc}"[:500])
                self._write(outcomes, report)
                continue
            if len(results) != len(messages):
                log.error("connector %s returned %d results for %d messages", cid, len(results), len(messages))
            outcomes += self._settle(sendable, {r.message_id: r for r in results}, db_now, report,
                                     missing="unknown", error="no_result")
            self._write(outcomes, report)

    def _settle(self, rows: Sequence[dict[str, Any]], results: Mapping[str, SendResult], db_now: datetime,
                report: DispatchReport, *, missing: str, error: str | None = None) -> list[dict[str, Any]]:
        """Outcome rows for ``rows`` from ``results``; a row without a result is
        ``missing``: ``config`` (held back, attempt returned), ``retry`` (not
        sent) or ``unknown`` (may have been sent)."""
        out = []
        for row in rows:
            result = results.get(str(row["id"]))
            if result is None:
                if missing == "config":
                    out += self._config_hold([row], db_now)
                    continue
                outcome = Outcome.RETRYABLE if missing == "retry" else Outcome.UNKNOWN
                result = SendResult(str(row["id"]), outcome, code=error or missing)
            out.append(self._apply(row, result, db_now, report))
        return out

    def _apply(self, row: dict[str, Any], result: SendResult, db_now: datetime,
               report: DispatchReport) -> dict[str, Any]:
        error = _error_text(result)
        if result.outcome is Outcome.ACCEPTED:
            report.sent += 1
            return self._outcome(row, "sent", provider_id=result.provider_id, sent_at=db_now)
        if result.outcome is Outcome.PERMANENT:
            report.failed += 1
            return self._outcome(row, "failed", last_error=error)
        marketing = (row["delivery_class"] or MARKETING) == MARKETING
        if result.outcome is Outcome.UNKNOWN and marketing:
            report.unknown += 1
            return self._outcome(row, "unknown", last_error=error)
        # retryable, or unknown for a transactional message (at least once)
        if int(row["attempts"]) >= self._max_attempts.get(row["connector"], 8):
            report.dead += 1
            return self._outcome(row, "dead", last_error=error)
        report.retried += 1
        delay = self.backoff.delay(int(row["attempts"]), self.rng, result.retry_after)
        return self._outcome(row, "retry", last_error=error, next_attempt_at=db_now + timedelta(seconds=delay))

    def _config_hold(self, rows: Sequence[dict[str, Any]], db_now: datetime) -> list[dict[str, Any]]:
        until = db_now + timedelta(seconds=self.backoff.config_delay)
        return [self._outcome(r, "retry", last_error="connector misconfigured; held", next_attempt_at=until,
                              new_attempts=max(0, int(r["attempts"]) - 1)) for r in rows]

    def _outcome(self, row: Mapping[str, Any], status: str, **values: Any) -> dict[str, Any]:
        return {"id": row["id"], "worker": row["claimed_by"], "attempts": row["attempts"], "status": status,
                **values}

    def _write(self, outcomes: Sequence[dict[str, Any]], report: DispatchReport) -> None:
        if not outcomes:
            return
        with transaction(self.session_factory) as session:
            done = dispatch_repo.settle(session, outcomes)
        if done < len(outcomes):
            report.lost_claims += len(outcomes) - done
            log.warning("%d claims were reaped before their outcome was written", len(outcomes) - done)

    def _alert(self, cid: str, exc: ConfigurationError, now: datetime, report: DispatchReport) -> None:
        report.misconfigured.append(cid)
        log.error("connector %s is misconfigured and stopped for this pass: %s", cid, exc)
        with transaction(self.session_factory) as session:
            append_event(session, "connector.misconfigured", "connector", cid,
                         {"connector": cid, "code": exc.code, "error": str(exc)[:500],
                          "worker": self.worker_id}, now)

    # ------------------------------------------------------------ recovery
    def reap(self, now: datetime, stale_after: timedelta = timedelta(minutes=5)) -> dict[str, int]:
        """Settle ``sending`` rows claimed more than ``stale_after`` ago (their
        worker died): marketing → ``unknown``, transactional → ``retry`` now."""
        with transaction(self.session_factory) as session:
            return dispatch_repo.reap(session, now=to_db_time(now), stale_before=to_db_time(now - stale_after))

    def resend(self, message_id: int, now: datetime) -> bool:
        """Queue a dead letter again (attempts reset). False if it is not dead."""
        with transaction(self.session_factory) as session:
            return dispatch_repo.resend(session, message_id, now=to_db_time(now))


def _error_text(result: SendResult) -> str | None:
    if result.outcome is Outcome.ACCEPTED:
        return None
    parts = [p for p in (result.code, result.detail) if p]
    return (": ".join(parts) or result.outcome.value)[:500]


def dispatch_tick(services: Any, *, loader: Callable[..., Connector] | None = None,
                  env: Mapping[str, str] | None = None) -> Callable[[datetime], DispatchReport]:
    """The scheduler's ``dispatch`` tick for the app's services: reap stale
    claims, then dispatch until idle through every enabled connector of the
    current definitions (``log`` ones are delivered by the automation tick).
    Connectors are built once per definitions version; one that fails to
    build is left out and reported as a ``connector.misconfigured`` event."""
    state: dict[str, Any] = {"key": None, "dispatcher": None}

    def build(now: datetime) -> Dispatcher:
        definitions = services.registry.current()
        if state["key"] is definitions and state["dispatcher"] is not None:
            return state["dispatcher"]
        load = loader
        if load is None:
            import importlib
            load = importlib.import_module("connectors.registry").load_connector
        built: dict[str, Connector] = {}
        for spec in definitions.connectors.values():
            if not spec.enabled or spec.type == "log":
                continue
            try:
                built[spec.id] = load(spec, env=os.environ if env is None else env)
            except ConfigurationError as exc:
                with transaction(services.session_factory) as session:
                    append_event(session, "connector.misconfigured", "connector", spec.id,
                                 {"connector": spec.id, "code": exc.code, "error": str(exc)[:500]}, now)
        tz = getattr(getattr(services, "settings", None), "timezone", None) or "Asia/Shanghai"
        state["key"], state["dispatcher"] = definitions, Dispatcher(services.session_factory, built, timezone=tz)
        return state["dispatcher"]

    def tick(now: datetime) -> DispatchReport:
        dispatcher = build(now)
        dispatcher.reap(now)
        return dispatcher.run_until_idle(now, max_passes=200)

    return tick
