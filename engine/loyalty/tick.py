"""What the scheduler runs for loyalty, at most once per local day each:

* points expiry at the start of the business day (lots whose ``expires_on``
  has come lapse; :func:`engine.storage.points_repo.expire_due`);
* tier evaluation at the tier definition's ``at`` time in its zone
  (:func:`engine.loyalty.tiers.evaluate`).

Each is claimed by a ``rule_runs`` row (``loyalty:expiry`` / ``loyalty:tiers``
for the occurrence), inserted in the same transaction as the work, so a
second scheduler or a restarted tick never runs a day twice; a day missed
while the worker was down runs at the next tick (the work is by "due by
today", so nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from engine.loyalty.points import local_day
from engine.loyalty.tiers import TierReport, evaluate
from engine.storage import automation_repo, points_repo
from engine.storage.database import transaction
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = ["EXPIRY_RUN", "TIERS_RUN", "LoyaltyReport", "loyalty_tick"]

EXPIRY_RUN = "loyalty:expiry"
TIERS_RUN = "loyalty:tiers"
#: Stored as the expire entries' reason; the pages show the kind's title instead.
EXPIRY_REASON = "validity"


@dataclass(frozen=True)
class LoyaltyReport:
    expired_customers: int | None = None  # None: not due this tick
    tiers: TierReport | None = None


def _latest(now: datetime, at: time, tz: str) -> datetime:
    """The latest local ``at`` time not after ``now`` (aware UTC)."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    moment = datetime.combine(local.date(), at, tzinfo=zone)
    if moment > local:
        moment = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=zone)
    return moment.astimezone(UTC)


def _claim(session: Session, run: str, occurrence: datetime, now: datetime) -> int | None:
    return automation_repo.claim_occurrence(session, rule_id=run, rule_version=0,
                                            scheduled_for=to_db_time(occurrence), db_now=to_db_time(now))


def loyalty_tick(session_factory: sessionmaker[Session], *, now: datetime, definitions: DefinitionSet,
                 tz: str) -> LoyaltyReport:
    """Run the loyalty work due at ``now`` (see the module notes)."""
    expired = None
    with transaction(session_factory) as session:
        run = _claim(session, EXPIRY_RUN, _latest(now, time(0, 0), tz), now)
        if run is not None:
            expired = points_repo.expire_due(session, local_day(now, tz), to_db_time(now), reason=EXPIRY_REASON)
            automation_repo.record_run(session, run_id=run, rule_id=EXPIRY_RUN, rule_version=0, kind="schedule",
                                       db_now=to_db_time(now), counters={}, detail={"customers": expired})
    tiers = None
    spec = definitions.tier
    if spec is not None:
        with transaction(session_factory) as session:
            run = _claim(session, TIERS_RUN, _latest(now, spec.at, spec.timezone), now)
            if run is not None:
                tiers = evaluate(session, spec, now=now)
                automation_repo.record_run(session, run_id=run, rule_id=TIERS_RUN, rule_version=0,
                                           kind="schedule", db_now=to_db_time(now), counters={},
                                           detail={"upgraded": tiers.upgraded, "downgraded": tiers.downgraded})
    return LoyaltyReport(expired, tiers)
