"""Campaigns as the application uses them: rows kept in step with the
``campaign`` definitions, created from approved requests, listed with their
status, their KPIs read from snapshots, and costs entered by hand.

The KPI snapshot of a campaign and range is recomputed only when the
source watermark (``campaigns_repo.watermark``) moved since it was stored,
and at most once per ``SNAPSHOT_MAX_AGE`` on a page view; the worker's tick
refreshes (at most once per ``TICK_MIN_AGE``) the default range of every
campaign that is running or ended within ``TICK_KEEP``. A page therefore reads one row, whatever the data size.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from engine.campaigns.costs import prices_of
from engine.campaigns.kpis import (
    CampaignKpis,
    KpiInputs,
    build_kpis,
    kpis_from_json,
    kpis_to_json,
)
from engine.definitions.loader import DefinitionSet
from engine.definitions.specs import (
    CampaignSpec,
    IfSpec,
    IssueCouponSpec,
    JourneyStep,
    RuleSpec,
)
from engine.forms.errors import FieldError, ValidationFailed
from engine.storage import campaigns_repo as repo
from engine.storage.database import transaction
from engine.storage.kpis_repo import KpiQuery, compute_raw
from engine.storage.times import from_db_time, to_db_time

__all__ = ["COST_CATEGORIES", "CampaignNotFound", "CampaignService", "CampaignView", "linked_pools",
           "materials_total", "status_of", "sync_definitions"]

#: Categories of a cost entered by hand.
#: A campaign's status, derived from its dates and an explicit end (never stored).
CAMPAIGN_STATUSES = ("planned", "running", "ended")
COST_CATEGORIES = ("labour", "media", "materials", "other")
SNAPSHOT_MAX_AGE = timedelta(seconds=60)
#: The worker recomputes a moved snapshot at most this often (a page view after a minute does it sooner).
TICK_MIN_AGE = timedelta(hours=1)
TICK_KEEP = timedelta(days=180)
CENT = Decimal("0.01")
MAX_COST = Decimal("1e10")


class CampaignNotFound(LookupError):
    """No campaign has this id."""


@dataclass(frozen=True)
class CampaignView:
    """A campaign as pages and the API show it (``status`` derived from the dates)."""

    id: str
    title: str
    title_en: str | None
    source: str
    record_id: int | None
    owner: str | None
    channel: str | None
    budget: Decimal | None
    starts_on: date
    ends_on: date
    ended_at: datetime | None
    attribution_days: int
    status: str
    targets: tuple[tuple[str, Decimal], ...]
    materials: tuple[Mapping[str, Any], ...]
    materials_cost: Decimal
    rules: tuple[str, ...]
    coupon_pools: tuple[str, ...]
    forms: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        def iso(t):
            return (None if t is None else from_db_time(t).isoformat().replace("+00:00", "Z"))
        return {
            "id": self.id, "title": self.title, "title_en": self.title_en, "source": self.source,
            "record_id": self.record_id, "owner": self.owner, "channel": self.channel,
            "budget": None if self.budget is None else f"{self.budget:.2f}",
            "starts_on": self.starts_on.isoformat(), "ends_on": self.ends_on.isoformat(),
            "ended_at": iso(self.ended_at), "attribution_window_days": self.attribution_days,
            "status": self.status,
            "targets": [{"metric": m, "target": str(t)} for m, t in self.targets],
            "materials": [dict(m) for m in self.materials], "materials_cost": f"{self.materials_cost:.2f}",
            "rules": list(self.rules), "coupon_pools": list(self.coupon_pools), "forms": list(self.forms),
            "created_at": iso(self.created_at), "updated_at": iso(self.updated_at),
        }


def status_of(starts_on: date, ends_on: date, ended_at: datetime | None, today: date) -> str:
    """planned before the first day, ended after the last day or once ended
    explicitly, running otherwise (days in the business time zone)."""
    if ended_at is not None or today > ends_on:
        return "ended"
    return "planned" if today < starts_on else "running"


def _pools_of_steps(steps: Sequence[JourneyStep]) -> set[str]:
    found: set[str] = set()
    for step in steps:
        if isinstance(step.action, IssueCouponSpec):
            found.add(step.action.pool)
        elif isinstance(step.action, IfSpec):
            found |= _pools_of_steps(step.action.then) | _pools_of_steps(step.action.else_)
    return found


def linked_pools(rules: Mapping[str, RuleSpec], rule_ids: Sequence[str]) -> set[str]:
    """The coupon pools the given rules issue from."""
    out: set[str] = set()
    for rid in rule_ids:
        if rid in rules:
            out |= _pools_of_steps(rules[rid].steps)
    return out


def materials_total(rows: Sequence[Mapping[str, Any]]) -> Decimal:
    """The sum of cost rows' ``amount`` (a request's materials, a definition's costs)."""
    return sum((Decimal(str(r.get("amount", 0))) for r in rows), Decimal(0)).quantize(CENT)


def sync_definitions(session: Session, definitions: DefinitionSet, *, now: datetime) -> int:
    """Write a row per ``campaign`` definition (run on publish). Its rules are
    those it lists and those whose ``campaign:`` names it; its pools those it
    lists and those its rules issue from. Returns how many were written."""
    stamp = to_db_time(now)
    rules = definitions.rules
    for spec in definitions.campaigns.values():
        rule_ids = set(spec.rules) | {r.id for r in rules.values() if r.campaign == spec.id}
        costs = [{"category": c.category, "amount": f"{c.amount:.2f}", "note": c.note} for c in spec.costs]
        repo.put(session, _definition_row(spec, costs),
                 {"rule": rule_ids, "pool": set(spec.coupon_pools) | linked_pools(rules, sorted(rule_ids)),
                  "form": spec.forms}, now=stamp)
    return len(definitions.campaigns)


def _definition_row(spec: CampaignSpec, costs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": spec.id, "title": spec.title, "title_en": spec.title_en, "source": "definition",
            "record_id": None, "owner": spec.owner, "channel": spec.channel, "budget": spec.budget,
            "starts_on": spec.start, "ends_on": spec.end,
            "attribution_days": max(1, int(spec.attribution_window.total_seconds() // 86400)),
            "targets": [{"metric": t.metric, "target": str(t.target)} for t in spec.targets],
            "materials": costs, "materials_cost": materials_total(costs)}


class CampaignService:
    """Campaign use cases over one database (see the module docstring)."""

    def __init__(self, session_factory: sessionmaker[Session], *, tz: str,
                 definitions: Callable[[], DefinitionSet]):
        self._sf, self._tz, self._defs = session_factory, ZoneInfo(tz), definitions

    # ------------------------------------------------------------ reading
    def _view(self, row: Mapping[str, Any], links: Mapping[str, list[str]], now: datetime) -> CampaignView:
        today = now.astimezone(self._tz).date()
        return CampaignView(
            id=row["id"], title=row["title"], title_en=row["title_en"], source=row["source"],
            record_id=row["record_id"], owner=row["owner"], channel=row["channel"],
            budget=None if row["budget"] is None else Decimal(str(row["budget"])).quantize(CENT),
            starts_on=row["starts_on"], ends_on=row["ends_on"], ended_at=row["ended_at"],
            attribution_days=int(row["attribution_days"]),
            status=status_of(row["starts_on"], row["ends_on"], row["ended_at"], today),
            targets=tuple((t["metric"], Decimal(str(t["target"]))) for t in row["targets"] or ()),
            materials=tuple(row["materials"] or ()),
            materials_cost=Decimal(str(row["materials_cost"] or 0)).quantize(CENT),
            rules=tuple(links.get("rule", ())), coupon_pools=tuple(links.get("pool", ())),
            forms=tuple(links.get("form", ())), created_at=row["created_at"], updated_at=row["updated_at"])

    def list(self, *, now: datetime, status: str | None = None) -> list[CampaignView]:
        """Every campaign, newest first, optionally of one status."""
        with transaction(self._sf) as session:
            rows = repo.list_all(session)
            links = repo.links_of(session, [r["id"] for r in rows])
        views = [self._view(r, links[r["id"]], now) for r in rows]
        return [v for v in views if status is None or v.status == status]

    def get(self, campaign_id: str, *, now: datetime) -> CampaignView:
        """Raises: CampaignNotFound."""
        with transaction(self._sf) as session:
            row = repo.get(session, campaign_id)
            if row is None:
                raise CampaignNotFound(campaign_id)
            links = repo.links_of(session, [campaign_id])[campaign_id]
        return self._view(row, links, now)

    # ------------------------------------------------------------ KPIs
    def default_range(self, view: CampaignView) -> tuple[datetime, datetime]:
        """From the first day's local midnight to the day after the last day
        (or the explicit end, if earlier), plus the attribution window: orders
        that late still count. Aware UTC datetimes."""
        start = datetime.combine(view.starts_on, time(0), self._tz).astimezone(UTC)
        end = datetime.combine(view.ends_on + timedelta(days=1), time(0), self._tz).astimezone(UTC)
        if view.ended_at is not None:
            end = min(end, from_db_time(view.ended_at))
        return start, end + timedelta(days=view.attribution_days)

    def local_day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self._tz).astimezone(UTC)

    def kpis(self, campaign_id: str, *, now: datetime, start: datetime | None = None, end: datetime | None = None,
             refresh: bool = False, total_revenue: bool = False) -> CampaignKpis:
        """The campaign's KPIs over [start, end) (default: its whole range),
        from the snapshot when it is current (see the module docstring);
        ``total_revenue`` also sums every order of the range (a snapshot of its own).

        Raises: CampaignNotFound."""
        view = self.get(campaign_id, now=now)
        d_start, d_end = self.default_range(view)
        start, end = start or d_start, end or d_end
        key = "default" if (start, end) == (d_start, d_end) else f"{_key(start)}|{_key(end)}"
        if total_revenue:
            key += "|total"
        with transaction(self._sf) as session:
            mark = repo.watermark(session, campaign_id)
            snap = repo.snapshot(session, campaign_id, key)
        if snap is not None and not refresh:
            fresh_enough = to_db_time(now) - snap["computed_at"] < SNAPSHOT_MAX_AGE
            if snap["watermark"] == mark or fresh_enough:
                return kpis_from_json(snap["body"])
        return self._compute_and_store(view, key, start, end, now=now, mark=mark, total_revenue=total_revenue)

    def _compute_and_store(self, view: CampaignView, key: str, start: datetime, end: datetime, *, now: datetime,
                           mark: str, total_revenue: bool = False) -> CampaignKpis:
        definitions = self._defs()
        prices, defaults = prices_of(definitions.connectors)
        pools = definitions.coupon_pools
        as_of = min(now, end)
        offset = int((now.astimezone(self._tz).utcoffset() or timedelta(0)).total_seconds() // 60)
        query = KpiQuery(view.id, to_db_time(start), to_db_time(end), to_db_time(max(as_of, start)),
                         view.attribution_days * 86400, offset, observed=to_db_time(max(now, start)),
                         with_total_revenue=total_revenue)
        local_first = start.astimezone(self._tz).date()
        local_last = (end - timedelta(microseconds=1)).astimezone(self._tz).date()
        # A read, not a transaction(): on SQLite that would hold the process's writer lock for the
        # whole computation; the temporary tables live in the connection's own temp schema.
        with self._sf() as session:
            try:
                raw = compute_raw(session, query)
                manual = repo.cost_totals(session, view.id, local_first, local_last)
            finally:
                session.rollback()
        extra: dict[str, Decimal] = dict(manual)
        for row in view.materials:
            cat = str(row.get("category") or "materials")
            extra[cat] = extra.get(cat, Decimal(0)) + Decimal(str(row.get("amount", 0)))
        inputs = KpiInputs(
            campaign_id=view.id, start=start, end=end, as_of=as_of, attribution_window_days=view.attribution_days,
            budget=view.budget, materials_cost=Decimal(0), manual_costs=extra, prices=prices, default_prices=defaults,
            pool_handling={p: s.cost_per_coupon for p, s in pools.items() if s.cost_per_coupon},
            targets=view.targets)
        kpis = build_kpis(raw, inputs)
        with transaction(self._sf) as session:
            repo.store_snapshot(session, view.id, key, watermark=mark, body=kpis_to_json(kpis), now=to_db_time(now))
        return kpis

    def tick(self, now: datetime) -> int:
        """Refresh the default-range snapshot of every campaign running, or
        ended within ``TICK_KEEP``, whose sources moved; returns how many."""
        done = 0
        today = now.astimezone(self._tz).date()
        for view in self.list(now=now):
            if view.status == "planned" or (view.status == "ended" and today - view.ends_on > TICK_KEEP):
                continue
            d_start, d_end = self.default_range(view)
            with transaction(self._sf) as session:
                mark = repo.watermark(session, view.id)
                snap = repo.snapshot(session, view.id, "default")
            recent = snap is not None and to_db_time(now) - snap["computed_at"] < TICK_MIN_AGE
            if snap is None or (snap["watermark"] != mark and not recent):
                self._compute_and_store(view, "default", d_start, d_end, now=now, mark=mark)
                done += 1
        return done

    # ------------------------------------------------------------ changes
    def end(self, campaign_id: str, *, now: datetime) -> CampaignView:
        """End a campaign now. Raises: CampaignNotFound."""
        with transaction(self._sf) as session:
            if repo.get(session, campaign_id) is None:
                raise CampaignNotFound(campaign_id)
            repo.end_now(session, campaign_id, now=to_db_time(now))
        return self.get(campaign_id, now=now)

    def costs(self, campaign_id: str) -> builtins.list[dict[str, Any]]:  # ``list`` here is the method above
        """Hand-entered costs. Raises: CampaignNotFound."""
        with transaction(self._sf) as session:
            if repo.get(session, campaign_id) is None:
                raise CampaignNotFound(campaign_id)
            return [cost_json(r) for r in repo.costs_of(session, campaign_id)]

    def add_cost(self, campaign_id: str, payload: Any, *, by: str | None, now: datetime) -> dict[str, Any]:
        """Add a cost entry ``{category, amount, incurred_on?, note?}``.

        Raises:
            CampaignNotFound: no such campaign.
            ValidationFailed: field errors (all of them).
        """
        with transaction(self._sf) as session:
            if repo.get(session, campaign_id) is None:
                raise CampaignNotFound(campaign_id)
        category, amount, day, note = parse_cost(payload, today=now.astimezone(self._tz).date())
        with transaction(self._sf) as session:
            new_id = repo.add_cost(session, campaign_id, category=category, amount=amount, incurred_on=day,
                                   note=note, by=by, now=to_db_time(now))
            rows = [r for r in repo.costs_of(session, campaign_id) if r["id"] == new_id]
        return cost_json(rows[0])


def _key(moment: datetime) -> str:
    return to_db_time(moment).strftime("%Y%m%dT%H%M%S")


def cost_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": int(row["id"]), "campaign_id": row["campaign_id"], "category": row["category"],
            "amount": f"{Decimal(str(row['amount'])):.2f}", "incurred_on": row["incurred_on"].isoformat(),
            "note": row["note"], "created_by": row["created_by"],
            "created_at": from_db_time(row["created_at"]).isoformat().replace("+00:00", "Z")}


def parse_cost(payload: Any, *, today: date) -> tuple[str, Decimal, date, str | None]:
    """A cost entry's fields, or every field error at once.

    Raises: ValidationFailed."""
    if not isinstance(payload, dict):
        raise ValidationFailed([FieldError("", "object_type")])
    errors: list[FieldError] = [FieldError(k, "unknown_field") for k in payload
                                if k not in ("category", "amount", "incurred_on", "note")]
    category = payload.get("category")
    if category in (None, ""):
        errors.append(FieldError("category", "required"))
    elif category not in COST_CATEGORIES:
        errors.append(FieldError("category", "option", {"options": list(COST_CATEGORIES)}))
    amount = None
    raw = payload.get("amount")
    if raw is None or raw == "":
        errors.append(FieldError("amount", "required"))
    elif isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        errors.append(FieldError("amount", "money_type"))
    else:
        try:
            amount = Decimal(str(raw).strip())
            if not amount.is_finite():
                raise ArithmeticError
        except (ArithmeticError, ValueError):
            errors.append(FieldError("amount", "money_type"))
            amount = None
        if amount is not None:
            if amount != amount.quantize(CENT):
                errors.append(FieldError("amount", "decimal_places", {"places": 2}))
            elif amount <= 0:
                errors.append(FieldError("amount", "min", {"min": "0.01"}))
            elif amount >= MAX_COST:
                errors.append(FieldError("amount", "max", {"max": str(MAX_COST)}))
    day = today
    raw_day = payload.get("incurred_on")
    if raw_day not in (None, ""):
        try:
            if not isinstance(raw_day, str):
                raise ValueError
            day = date.fromisoformat(raw_day)
        except ValueError:
            errors.append(FieldError("incurred_on", "date_type"))
    note = payload.get("note")
    if note is not None and not isinstance(note, str):
        errors.append(FieldError("note", "string_type"))
    elif isinstance(note, str) and len(note) > 255:
        errors.append(FieldError("note", "too_long", {"max_length": 255}))
    if errors:
        raise ValidationFailed(errors)
    assert isinstance(category, str) and amount is not None
    return category, amount.quantize(CENT), day, (note or None)
