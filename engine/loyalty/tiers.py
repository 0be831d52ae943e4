"""Membership tiers (会员等级): every customer's tier from the published
``tier`` definition, set-based (:mod:`engine.storage.tiers_repo`).

Run once a local day by the loyalty tick; a customer whose figure crossed a
threshold either way gets the new tier and a ``tier.changed`` event, which a
rule may be triggered by (``trigger: {event: tier.changed, when: {to: gold}}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from engine.storage import tiers_repo
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loyalty import TierSpec

__all__ = ["TierReport", "evaluate"]


@dataclass(frozen=True)
class TierReport:
    upgraded: int
    downgraded: int


def evaluate(session: Session, spec: TierSpec, *, now: datetime) -> TierReport:
    """Set every customer's tier by their figure over ``spec.window`` up to ``now``."""
    up, down = tiers_repo.evaluate_tiers(
        session, basis=spec.basis, levels=[(lv.key, lv.min) for lv in spec.levels],
        since=to_db_time(now - spec.window), db_now=to_db_time(now))
    return TierReport(up, down)
