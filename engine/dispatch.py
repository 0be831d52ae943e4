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
   rows of a connector outside its ``send_window`` (local time; Tencent's
   08:00–22:00 by default) are never claimed: they are deferred to the
   window's next opening. **Rate limits** (:mod:`engine.dispatch_limits`): a
   connector-wide budget caps what is claimed; rows over a per-recipient
   limit, and rows a provider answered with a rate-limit code, are given back
   unsent — the attempt returned, due again when the limit allows. Throttled
   rows wait; they are never dropped and never dead-lettered for it.
3. **Send** per connector in chunks of ``max_batch`` and settle each message:
   accepted → ``sent``; retryable → ``retry`` with exponential backoff and
   jitter (``retry_after`` honoured), ``dead`` once the connector's
   ``max_attempts`` is used up; permanent → ``failed``; unknown (the request
   left, no answer) → marketing ``unknown`` (at most once: never resent
   blindly), transactional ``retry`` (at least once). A
   :class:`~engine.ports.ConfigurationError` stops that connector for the
   pass: its unsettled rows go back to ``retry`` after a long backoff with
   the attempt given back, and a ``connector.misconfigured`` event is written.

:meth:`Dispatcher.reap` settles claims of dead workers; :meth:`Dispatcher.reconcile`
asks the providers about ``unknown`` rows (status queries) and applies what they
say; :meth:`Dispatcher.resend` puts a dead letter (or, confirmed, an ``unknown``
row) back in the queue.

Nothing here reads the wall clock: ``now`` is passed in (aware UTC).
"""

from __future__ import annotations

import logging
import os
import random
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from engine.clicks import ClickLinker, linker_for
from engine.dispatch_limits import RATE_LIMIT_CODES, RatePolicy, WindowCounter, policy_for, recipient_waits
from engine.ports import (
    ConfigurationError,
    Connector,
    ConnectorError,
    DeliveryClass,
    FeedbackItem,
    Outcome,
    OutgoingMessage,
    SendResult,
    UnsupportedOperation,
)
from engine.storage import dispatch_repo
from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

log = logging.getLogger("promoflow.dispatch")

__all__ = ["SANDBOX_TYPE", "Backoff", "DispatchReport", "Dispatcher", "ReconcileReport", "ResendResult",
           "dispatch_tick", "next_window_open", "sandbox_folder", "sandboxed", "window_open"]

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
class ReconcileReport:
    """What one reconcile pass did."""

    checked: int = 0
    settled: int = 0
    receipts: int = 0
    unresolved: int = 0
    given_up: int = 0


class ResendResult:
    """Answers of :meth:`Dispatcher.resend`."""

    QUEUED = "queued"
    NOT_FOUND = "not_found"
    NOT_RESENDABLE = "not_resendable"
    NEEDS_CONFIRMATION = "needs_confirmation"


#: Statuses a person may resend: dead letters, and ``unknown`` rows (which may
#: already have reached the customer: a marketing one needs confirming).
RESENDABLE = ("dead", "unknown")


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
    #: given back unsent because of a rate limit (not an attempt)
    throttled: int = 0
    lost_claims: int = 0
    misconfigured: list[str] = field(default_factory=list)

    def add(self, other: DispatchReport) -> None:
        for name in ("claimed", "sent", "retried", "dead", "failed", "unknown", "skipped", "deferred",
                     "throttled", "lost_claims"):
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
                 max_attempts: Mapping[str, int] | None = None,
                 rate_policies: Mapping[str, RatePolicy] | None = None,
                 links: ClickLinker | None = None,
                 windows: Callable[[str, list[tuple[int, float]]], Any] | None = None) -> None:
        self.session_factory = session_factory
        #: Rewrites the template URLs of customer messages into short ``/c/`` links.
        self.links = links
        self.connectors = dict(connectors)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.tz = ZoneInfo(timezone)
        self.backoff = backoff or Backoff()
        self.rng = rng or random.Random()
        self.window_classes = tuple(window_classes)
        self._windows: dict[str, tuple[time, time] | None] = {}
        self._max_attempts: dict[str, int] = {}
        self._policies: dict[str, RatePolicy] = {}
        for cid, conn in self.connectors.items():
            spec = getattr(conn, "spec", None)
            self._policies[cid] = policy_for(spec)
            self._max_attempts[cid] = int(getattr(spec, "max_attempts", None) or default_max_attempts)
        self._policies.update(rate_policies or {})
        for cid, policy in self._policies.items():
            self._windows[cid] = policy.window
        self._windows.update(send_windows or {})
        self._max_attempts.update(max_attempts or {})
        # One connector-wide window per connector: this process's own, or
        # ``windows(connector id, limits)`` shared by every dispatcher process.
        make = windows or (lambda _cid, limits: WindowCounter(limits))
        self._counters = {cid: make(cid, p.connector_limits()) for cid, p in self._policies.items()}
        self._pass_time: datetime | None = None

    # ------------------------------------------------------------------ pass
    def run_once(self, now: datetime, batch: int = 500) -> DispatchReport:
        """Claim up to ``batch`` due rows, send them, record every outcome."""
        report = DispatchReport()
        db_now = to_db_time(now)
        self._pass_time = db_now
        open_connectors = self._open_connectors(now, db_now, report)
        if not open_connectors:
            return report
        rows = self._claim(open_connectors, now, db_now, batch)
        report.claimed = len(rows)
        if not rows:
            return report
        rows = self._gate(rows, db_now, report)
        rows = self._recipient_gate(rows, now, db_now, report)
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

    def _claim(self, connectors: Sequence[str], now: datetime, db_now: datetime,
               batch: int) -> list[dict[str, Any]]:
        """Claim due rows: connectors without a connector-wide limit together,
        each limited one no more than its remaining budget (so nothing is
        claimed only to be given back)."""
        ts = now.timestamp()
        free, limited = [], []
        for cid in connectors:
            budget = self._counters[cid].reserve(batch, ts) if cid in self._counters else None
            if budget is None:
                free.append(cid)
            elif budget > 0:
                limited.append((cid, budget))
        rows: list[dict[str, Any]] = []
        claimed = {cid: 0 for cid, _ in limited}
        try:
            with transaction(self.session_factory) as session:
                if free:
                    rows += dispatch_repo.claim(session, worker_id=self.worker_id, now=db_now, limit=batch,
                                                connectors=free)
                for cid, limit in limited:
                    got = dispatch_repo.claim(session, worker_id=self.worker_id, now=db_now, limit=limit,
                                              connectors=[cid])
                    claimed[cid] = len(got)
                    rows += got
        except BaseException:
            claimed = {cid: 0 for cid in claimed}
            raise
        finally:
            for cid, limit in limited:  # slots reserved but not claimed go back to the shared window
                if limit > claimed[cid]:
                    self._counters[cid].give_back(limit - claimed[cid], ts)
        return rows

    def _recipient_gate(self, rows: list[dict[str, Any]], now: datetime, db_now: datetime,
                        report: DispatchReport) -> list[dict[str, Any]]:
        """Give back rows over a per-recipient limit (e.g. WeCom's 30 a minute
        to one member), counting every dispatcher's recent claims in the
        database; they are due again when the window allows."""
        by_connector: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if self._policies.get(row["connector"], RatePolicy()).per_recipient:
                by_connector.setdefault(row["connector"], []).append(row)
        if not by_connector:
            return rows
        held: dict[int, float] = {}
        ts = now.timestamp()
        with self.session_factory() as session:
            for cid, group in by_connector.items():
                policy = self._policies[cid]
                limits = policy.per_recipient
                longest = max(period for _, period in limits)
                recent = dispatch_repo.recent_claims(session, connector=cid,
                                                     recipients={str(r["recipient"]) for r in group},
                                                     since=db_now - timedelta(seconds=longest),
                                                     separator=policy.recipient_separator)
                as_seconds = {k: [(_db_seconds(t), i) for t, i in v] for k, v in recent.items()}
                held.update(recipient_waits(group, as_seconds, limits, ts))
            session.rollback()
        if not held:
            return rows
        keep, release = [], []
        for row in rows:
            wait = held.get(int(row["id"]))
            if wait is None:
                keep.append(row)
                continue
            counter = self._counters.get(row["connector"])
            if counter is not None:
                counter.give_back(1, ts)
            release.append({"id": row["id"], "worker": row["claimed_by"], "attempts": row["attempts"],
                            "next_attempt_at": db_now + timedelta(seconds=max(1.0, wait))})
        self._release(release, report)
        return keep

    def _release(self, items: Sequence[dict[str, Any]], report: DispatchReport) -> None:
        if not items:
            return
        with transaction(self.session_factory) as session:
            done = dispatch_repo.release(session, items)
        report.throttled += len(items)
        report.lost_claims += len(items) - done

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
            chunk = self._with_links(rows[start:start + size], now)
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

    def _with_links(self, rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """The rows as they are delivered: template URLs as short click links
        (every render path's messages pass here, with their outbox ids)."""
        if self.links is None:
            return rows
        try:
            return self.links.apply(self.session_factory, rows, now)
        except Exception:  # tracking must never stop a delivery
            log.exception("storing click links failed; sending %d messages with their plain links", len(rows))
            return rows

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
        if result.outcome is Outcome.RETRYABLE and (result.code or "") in RATE_LIMIT_CODES:
            # Too fast, not a failure: the attempt is given back (see _write).
            report.throttled += 1
            wait = max(1.0, float(result.retry_after or 0.0))
            return {**self._outcome(row, "release", last_error=error),
                    "next_attempt_at": db_now + timedelta(seconds=wait)}
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
                "at": self._pass_time, **values}

    def _write(self, outcomes: Sequence[dict[str, Any]], report: DispatchReport) -> None:
        if not outcomes:
            return
        released = [o for o in outcomes if o["status"] == "release"]
        settled = [o for o in outcomes if o["status"] != "release"]
        with transaction(self.session_factory) as session:
            done = dispatch_repo.settle(session, settled)
            done += dispatch_repo.release(session, released)
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

    def resend(self, message_id: int, now: datetime, *, confirm_duplicate: bool = False,
               actor: str | None = None) -> str:
        """Queue a dead letter — or an ``unknown`` row — again (attempts reset,
        same idempotency key). A marketing ``unknown`` row may already have
        reached the customer, so it is queued only with ``confirm_duplicate``;
        a transactional one is at-least-once anyway. With ``actor`` the resend
        is written to the audit log in the same transaction. Returns a
        :class:`ResendResult` value."""
        from engine.storage.models import OutboxMessage

        with transaction(self.session_factory) as session:
            row = session.get(OutboxMessage, message_id)
            if row is None:
                return ResendResult.NOT_FOUND
            if row.status not in RESENDABLE:
                return ResendResult.NOT_RESENDABLE
            if (row.status == "unknown" and (row.delivery_class or MARKETING) == MARKETING
                    and not confirm_duplicate):
                return ResendResult.NEEDS_CONFIRMATION
            status = row.status
            session.expunge(row)
            done = dispatch_repo.resend(session, message_id, now=to_db_time(now), statuses=(status,))
            if done and actor is not None:
                append_audit(session, at=now, actor=actor, action="message.resend", entity_type="message",
                             entity_id=message_id, diff={"status": [status, "queued"],
                                                         "confirmed_duplicate": bool(confirm_duplicate)})
        return ResendResult.QUEUED if done else ResendResult.NOT_RESENDABLE

    def reconcile(self, now: datetime, *, min_age: timedelta = timedelta(minutes=2),
                  every: timedelta = timedelta(minutes=10), max_checks: int = 6,
                  limit: int = 200) -> ReconcileReport:
        """Ask each provider that offers a status query about ``unknown`` rows
        (claimed at least ``min_age`` ago, looked up at most every ``every``,
        at most ``max_checks`` times) and apply the answers as receipts.

        A row the provider has becomes ``sent`` with its provider id and
        delivery status; a row it does not have stays ``unknown`` — absence is
        not proof (the record may lag, or the request died on the way) — and
        after ``max_checks`` lookups is left with a note for a person, who may
        resend it. Receipts the query returns for other rows (Tencent pulls a
        queue of reports) are applied too."""
        report = ReconcileReport()
        db_now = to_db_time(now)
        for cid, connector in self.connectors.items():
            if type(connector).reconcile is Connector.reconcile:
                continue  # no status query: unknown rows wait for a receipt or a person
            with self.session_factory() as session:
                rows = dispatch_repo.unknown_rows(session, connector=cid, claimed_before=db_now - min_age,
                                                  checked_before=db_now - every, max_checks=max_checks,
                                                  limit=limit)
                session.rollback()
            if not rows:
                continue
            queries = []
            for row in rows:
                try:
                    queries.append((OutgoingMessage.from_outbox(row), _aware(row["claimed_at"])))
                except (ValueError, TypeError):
                    continue
            try:
                items = connector.reconcile(queries)
            except UnsupportedOperation:
                continue
            except ConnectorError as exc:
                log.warning("connector %s: status query failed: %s", cid, exc)
                continue
            report.checked += len(rows)
            settled = self.apply_receipts(cid, items, now)
            report.receipts += len(items)
            found = {int(i.message_id) for i in items if i.message_id and str(i.message_id).isdigit()}
            report.settled += settled
            open_ids = [int(r["id"]) for r in rows if int(r["id"]) not in found]
            report.unresolved += len(open_ids)
            with transaction(self.session_factory) as session:
                report.given_up += dispatch_repo.mark_checked(session, open_ids, now=db_now, max_checks=max_checks)
        return report

    def apply_receipts(self, connector_id: str, items: Sequence[FeedbackItem], now: datetime) -> int:
        """Store and apply delivery receipts (callbacks or status queries) of
        ``connector_id``. Returns how many changed a message."""
        return apply_receipts(self.session_factory, connector_id, items, now)


def apply_receipts(session_factory: sessionmaker[Session], connector_id: str, items: Sequence[FeedbackItem],
                   now: datetime) -> int:
    """Store and apply ``receipt`` items in one transaction (see
    :func:`engine.storage.dispatch_repo.apply_receipt`). The event key is the
    provider id (or our id) with the status, so a repeated callback is a no-op
    and a later, final status still applies. Returns receipts applied."""
    applied = 0
    db_now = to_db_time(now)
    with transaction(session_factory) as session:
        for item in items:
            if item.kind != "receipt":
                continue
            message_id = int(item.message_id) if item.message_id and str(item.message_id).isdigit() else None
            key = f"{item.provider_id or item.message_id}:{item.status}"
            code = item.data.get("code") if item.data else None
            outcome = dispatch_repo.apply_receipt(
                session, connector=connector_id, event_key=key, now=db_now, message_id=message_id,
                provider_id=item.provider_id, status=item.status, code=str(code) if code else None,
                recipient=item.sender,
                occurred_at=to_db_time(item.occurred_at) if item.occurred_at else None,
                payload={k: v for k, v in (item.data or {}).items() if isinstance(v, (str, int, float, bool))})
            applied += outcome == "applied"
    return applied


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _db_seconds(value: datetime) -> float:
    """Seconds since the epoch of a naive-UTC database time."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _error_text(result: SendResult) -> str | None:
    if result.outcome is Outcome.ACCEPTED:
        return None
    parts = [p for p in (result.code, result.detail) if p]
    return (": ".join(parts) or result.outcome.value)[:500]


#: The connector type of the built-in sandbox inbox (``connectors.sandbox``).
SANDBOX_TYPE = "sandbox"


def sandbox_folder(settings: Any) -> str:
    """The sandbox inbox folder of an installation: ``<instance>/sandbox``."""
    return os.path.join(str(getattr(settings, "instance_path", "instance")), "sandbox")


def sandboxed(spec: Any, settings: Any) -> Any:
    """``spec`` delivering to the sandbox inbox instead of its provider
    (setting ``connector_sandbox``): same id, channel, send window and
    attempts; no secrets; no rate limits (they are the provider's, and the
    sandbox has none)."""
    from dataclasses import replace

    return replace(spec, type=SANDBOX_TYPE, secrets={}, per_second=None, per_minute=None,
                   per_recipient_per_minute=None,
                   settings={"folder": sandbox_folder(settings), "instead_of": spec.type})


def dispatch_tick(services: Any, *, loader: Callable[..., Connector],
                  env: Mapping[str, str] | None = None, only: str | None = None,
                  windows: Callable[[str, list[tuple[int, float]]], Any] | None = None,
                  reap_after: timedelta = timedelta(minutes=5),
                  batch: int = 500, max_passes: int = 200,
                  keep_going: Callable[[], bool] | None = None) -> Callable[[datetime], DispatchReport]:
    """The scheduler's ``dispatch`` tick for the app's services: reap stale
    claims (older than ``reap_after``), dispatch until idle, then reconcile
    ``unknown`` rows by the providers' status queries, through every enabled
    connector of the current definitions (``log`` ones are delivered by the
    automation tick), or only the connector ``only`` (a Celery task per
    connector). Connectors are built once per definitions version by
    ``loader`` (the host passes ``connectors.registry.load_connector``: the
    engine knows the Connector port, never the concrete connectors); one that
    fails to build is left out and reported as a ``connector.misconfigured``
    event. ``windows``: shared connector-wide rate windows (see
    :class:`Dispatcher`). ``keep_going``: asked after each pass whether to
    go on (a Celery task's time budget; the engine reads no clock)."""
    state: dict[str, Any] = {"key": None, "dispatcher": None, "broken": {}}

    def build(now: datetime) -> Dispatcher:
        definitions = services.registry.current()
        if state["key"] is definitions and state["dispatcher"] is not None:
            return state["dispatcher"]
        built: dict[str, Connector] = {}
        broken: dict[str, str] = {}
        settings = getattr(services, "settings", None)
        sandbox = bool(getattr(settings, "connector_sandbox", False))
        for spec in definitions.connectors.values():
            if not spec.enabled or spec.type == "log" or (only is not None and spec.id != only):
                continue
            if sandbox:
                if spec.channel == "feedback":
                    continue  # receive only: nothing of theirs is dispatched
                spec = sandboxed(spec, settings)
            try:
                built[spec.id] = loader(spec, env=os.environ if env is None else env)
            except ConfigurationError as exc:
                broken[spec.id] = f"waiting: connector `{spec.id}` cannot deliver: {exc}"[:500]
                with transaction(services.session_factory) as session:
                    append_event(session, "connector.misconfigured", "connector", spec.id,
                                 {"connector": spec.id, "code": exc.code, "error": str(exc)[:500]}, now)
        tz = getattr(settings, "timezone", None) or "Asia/Shanghai"
        links = linker_for(definitions, str(getattr(settings, "base_url", "") or ""),
                           str(getattr(settings, "secret_key", "") or ""))
        state["key"], state["dispatcher"] = definitions, Dispatcher(services.session_factory, built, timezone=tz,
                                                                    links=links, windows=windows)
        state["broken"] = broken
        return state["dispatcher"]

    def tick(now: datetime) -> DispatchReport:
        dispatcher = build(now)
        if state["broken"]:
            # Their rows are never claimed: say on each why it waits (the /messages list shows it).
            with transaction(services.session_factory) as session:
                dispatch_repo.note_waiting(session, state["broken"])
        dispatcher.reap(now, stale_after=reap_after)
        if keep_going is None:
            report = dispatcher.run_until_idle(now, batch=batch, max_passes=max_passes)
        else:
            report = DispatchReport()
            for _ in range(max_passes):
                one = dispatcher.run_once(now, batch)
                report.add(one)
                if one.claimed == 0 or not keep_going():
                    break
        try:
            dispatcher.reconcile(now)
        except Exception:  # a status query must never stop deliveries
            log.exception("reconcile of unknown messages failed")
        return report

    return tick
