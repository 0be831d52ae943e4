"""What a rule would do, without doing it: ``promoflow rules preview`` and the
rules page's preview button.

The audience is counted and sampled with the same SQL the rule's run uses;
then the rule runs for real on a simulated clock over the next days — audience
runs at its schedule's occurrences, due journey steps at their ``due_at``
(waits, quiet hours, caps, calendars) — inside one transaction that is always
rolled back. What it wrote to the outbox is counted per local day and
channel before the rollback; nothing is kept (on PostgreSQL only sequence
numbers move).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from croniter import croniter

from engine.automation.entry import enter_audience
from engine.automation.facts import business_now
from engine.automation.journeys import advance_due
from engine.automation.policy import Policy
from engine.automation.timing import schedule_of, zone
from engine.definitions.specs import EventTrigger, RuleSpec
from engine.storage import rule_preview_repo as repo

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = ["ArmForecast", "DayForecast", "Preview", "preview_rule"]

#: Most simulated clock stops (occurrences and due times) one preview makes.
MAX_STOPS = 2000


@dataclass
class DayForecast:
    day: date
    entered: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # channel → count
    coupons: int = 0
    sms_cost: Decimal = Decimal(0)

    @property
    def total(self) -> int:
        return sum(self.messages.values())


@dataclass
class ArmForecast:
    """One experiment arm over the forecast: who entered it, what it was sent
    and issued (the control group's messages and coupons stay at 0)."""

    key: str
    title: str
    title_en: str | None
    entered: int = 0
    messages: int = 0
    coupons: int = 0


@dataclass
class Preview:
    rule_id: str
    title: str
    audience_count: int
    sample: list[dict[str, Any]]
    days: list[DayForecast]
    sms_price: Decimal
    event_triggered: bool = False
    arms: list[ArmForecast] = field(default_factory=list)

    @property
    def channels(self) -> list[str]:
        return sorted({c for d in self.days for c in d.messages})

    @property
    def total_messages(self) -> int:
        return sum(d.total for d in self.days)

    @property
    def total_sms_cost(self) -> Decimal:
        return sum((d.sms_cost for d in self.days), Decimal(0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id, "title": self.title, "audience_count": self.audience_count,
            "sample": self.sample, "event_triggered": self.event_triggered, "sms_price": str(self.sms_price),
            "days": [{"day": d.day.isoformat(), "entered": d.entered, "messages": d.messages, "coupons": d.coupons,
                      "sms_cost": str(d.sms_cost)} for d in self.days],
            "total_messages": self.total_messages, "total_sms_cost": str(self.total_sms_cost),
            "arms": [{"key": a.key, "title": a.title, "title_en": a.title_en, "entered": a.entered,
                      "messages": a.messages, "coupons": a.coupons} for a in self.arms],
        }


def _segments(definitions: DefinitionSet) -> dict[str, Any]:
    return {k: s.condition for k, s in definitions.segments.items()}


def audience(session: Session, rule: RuleSpec, *, now: datetime, definitions: DefinitionSet,
             sample: int = 10) -> tuple[int, list[dict[str, Any]]]:
    """How many customers the rule's audience holds now, and the first ``sample`` of them."""
    return repo.audience_sample(session, rule.audience, now=business_now(now, rule),
                                segments=_segments(definitions), sample=sample)


def preview_rule(session_factory: sessionmaker[Session], rule_id: str, *, now: datetime,
                 definitions: DefinitionSet, days: int = 7, policy: Policy | None = None,
                 sms_price: Decimal | float | str = "0.045", sample: int = 10, batch: int = 5000) -> Preview:
    """Count and sample ``rule_id``'s audience, then forecast per local day
    (in the rule's zone) over ``days`` days from ``now`` what it would send.

    Raises:
        KeyError: no such rule.
    """
    policy = policy or Policy()
    rule = definitions.rules[rule_id]
    price = Decimal(str(sms_price))
    tz = zone(rule.timezone)
    start_day = now.astimezone(tz).date()
    forecast = {start_day + timedelta(days=i): DayForecast(start_day + timedelta(days=i)) for i in range(days)}
    horizon = datetime.combine(start_day + timedelta(days=days), datetime.min.time(), tzinfo=tz)
    session = session_factory()
    try:
        count, rows = audience(session, rule, now=now, definitions=definitions, sample=sample)
        result = Preview(rule.id, rule.title, count, rows, list(forecast.values()), price,
                         event_triggered=isinstance(rule.trigger, EventTrigger))
        if result.event_triggered or days <= 0:
            return result
        first_out, first_coupon, first_journey = repo.high_water(session)
        _simulate(session, rule, now=now, horizon=horizon, definitions=definitions, policy=policy, batch=batch,
                  forecast=forecast, tz=tz)
        for created, channel in repo.outbox_written_after(session, first_out, rule.id):
            day = forecast.get(created.astimezone(tz).date())
            if day is not None:
                day.messages[channel] = day.messages.get(channel, 0) + 1
        for issued in repo.coupons_issued_after(session, first_coupon):
            day = forecast.get(issued.astimezone(tz).date())
            if day is not None:
                day.coupons += 1
        result.arms = _arms(session, rule, first_journey=first_journey, first_out=first_out,
                            first_coupon=first_coupon)
        for day in forecast.values():
            day.sms_cost = (price * day.messages.get("sms", 0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        return result
    finally:
        session.rollback()
        session.close()


def _arms(session: Session, rule: RuleSpec, *, first_journey: int, first_out: int,
          first_coupon: int) -> list[ArmForecast]:
    """Per experiment arm of the rule: journeys entered, messages and coupons of the simulation."""
    from engine.experiments import arm_spec, bounds

    if rule.experiment is None:
        return []
    out: dict[str, ArmForecast] = {}
    for _, key in bounds(rule.experiment):
        arm = arm_spec(rule, key)
        out[key] = ArmForecast(key, (arm.title if arm else None) or key, arm.title_en if arm else None)
    counts = repo.arm_counts(session, rule.id, first_journey=first_journey, first_out=first_out,
                             first_coupon=first_coupon)
    for arm_key, (entered, messages, coupons) in counts.items():
        if arm_key is not None and arm_key in out:  # journeys of no arm (None) have no forecast row
            out[arm_key].entered, out[arm_key].messages, out[arm_key].coupons = entered, messages, coupons
    return list(out.values())


def _simulate(session: Session, rule: RuleSpec, *, now: datetime, horizon: datetime, definitions: DefinitionSet,
              policy: Policy, batch: int, forecast: dict[date, DayForecast], tz: Any) -> None:
    """Move a simulated clock from ``now`` to ``horizon``, stopping at each
    audience occurrence and each due time of the rule's journeys."""
    version = policy.version_of(rule.id)
    sched = schedule_of(rule)
    occurrences: list[datetime] = []
    if sched is not None and rule.enabled:
        it = croniter(sched[0], now.astimezone(zone(sched[1])))
        while True:
            occ = it.get_next(datetime)
            if occ >= horizon or len(occurrences) > MAX_STOPS:
                break
            occurrences.append(occ)
    clock = now
    for _ in range(MAX_STOPS):
        next_due = repo.next_due(session, rule.id)
        candidates = [next_due] if next_due is not None else []
        if occurrences:
            candidates.append(occurrences[0])
        if not candidates:
            return
        clock = max(clock, min(candidates))
        if clock >= horizon:
            return
        while occurrences and occurrences[0] <= clock:
            occ = occurrences.pop(0)
            entered = enter_audience(session, rule, version, now=occ, definitions=definitions, occurrence=occ)
            day = forecast.get(occ.astimezone(tz).date())
            if day is not None:
                day.entered += entered
        while True:
            report = advance_due(session, now=clock, definitions=definitions, batch=batch, policy=policy,
                                 rule_ids=[rule.id])
            if report.claimed < batch:
                break
        session.flush()
