"""The scheduler host: APScheduler 3 driving the engine's ticks.

The engine has no clock thread (like SpiffWorkflow, the host drives it):
every ``interval`` seconds the active scheduler calls each tick function with
``now`` — due rule runs (with their catch-up policy, kept exactly-once by the
engine's run ledger), event-triggered journeys, due journey steps, approval
reminders and escalations, outbox delivery.

Only one scheduler per database is active (see :mod:`web.leader`); the others
stand by and take over when it dies. The active one keeps its jobs in
APScheduler's SQLAlchemy job store in the same database, with ``coalesce`` and
``max_instances=1``, so a slow tick or a restart never runs a tick twice at
once and missed ticks collapse into one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from .leader import LeaderLock

log = logging.getLogger("promoflow.scheduler")

TICK_JOB_ID = "promoflow.tick"
_HOSTS: dict[str, "SchedulerHost"] = {}


def run_tick(host_id: str) -> None:
    """The job APScheduler stores (by reference): run one tick of a host."""
    host = _HOSTS.get(host_id)
    if host is not None:
        host.tick()


@dataclass
class TickResult:
    at: datetime
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class SchedulerHost:
    """Runs ``ticks`` (name → callable(now)) every ``interval`` seconds while
    this process holds the leader lock; polls for the lock otherwise."""

    def __init__(self, engine: Engine, ticks: Sequence[tuple[str, Callable[[datetime], Any]]], *,
                 clock: Callable[[], datetime], interval: float = 30.0, standby_poll: float = 5.0,
                 lock: LeaderLock | None = None, host_id: str | None = None):
        self.engine = engine
        self.ticks = list(ticks)
        self.clock = clock
        self.interval = interval
        self.standby_poll = standby_poll
        self.lock = lock or LeaderLock(engine)
        self.host_id = host_id or f"host-{id(self)}"
        self.last: TickResult | None = None
        self._scheduler: BackgroundScheduler | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()

    # -- one tick -------------------------------------------------------------------

    def tick(self) -> TickResult:
        """Run every tick function once with the same ``now``; one failing
        function is logged and does not stop the others."""
        from .logs import new_id, tick_id
        from .metrics import observe_tick_part

        with self._tick_lock:
            token = tick_id.set(new_id()[:16])  # every log line of this tick carries it (issue 17)
            try:
                result = TickResult(self.clock())
                for name, fn in self.ticks:
                    started = time.perf_counter()
                    try:
                        result.results[name] = fn(result.at)
                    except Exception as exc:  # noqa: BLE001 - a tick must survive one broken part
                        log.exception("tick %s failed", name)
                        result.errors[name] = f"{type(exc).__name__}: {exc}"
                    observe_tick_part(name, time.perf_counter() - started, name not in result.errors)
                self.last = result
                return result
            finally:
                tick_id.reset(token)

    # -- leadership -----------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self._scheduler is not None

    def try_lead(self) -> bool:
        """Become the active scheduler if nobody is; True while leading."""
        if self._scheduler is not None:
            if self.lock.still_held():
                return True
            log.warning("lost the scheduler lock; standing by")
            self._stop_scheduler()
        if not self.lock.acquire():
            return False
        _HOSTS[self.host_id] = self
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename="apscheduler_jobs")},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(self.interval) + 1},
            timezone="UTC",
        )
        scheduler.add_job(run_tick, "interval", seconds=self.interval, args=[self.host_id], id=TICK_JOB_ID,
                          replace_existing=True, next_run_time=datetime.now().astimezone())
        scheduler.start()
        self._scheduler = scheduler
        log.info("this process is the active scheduler (tick every %ss)", self.interval)
        return True

    def start(self) -> None:
        """Lead now if possible, and keep trying in the background."""
        self.try_lead()
        self._thread = threading.Thread(target=self._standby_loop, name="promoflow-scheduler", daemon=True)
        self._thread.start()

    def _standby_loop(self) -> None:
        while not self._stop.wait(self.standby_poll):
            try:
                self.try_lead()
            except Exception:  # noqa: BLE001 - the database may be down for a while
                log.exception("scheduler leadership check failed")

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.standby_poll + 5)
        self._stop_scheduler()
        self.lock.release()
        _HOSTS.pop(self.host_id, None)
