"""Entry plus the first steps of a scheduled rule as SQL, when the steps allow it.

:func:`enter_and_start` is what a schedule (or ``rules run``) calls: it plans
the rule's first segment with the fast path's planner and, when every step of
it can be written as SQL (see :mod:`engine.storage.entry_sql`), enters the
audience and runs the segment in a few statements. Otherwise it enters as
:func:`engine.automation.entry.enter_audience` does and leaves the steps to
:func:`engine.automation.journeys.advance_due`.

The SQL path only takes what it can do exactly as the per-journey path would:
customers in the rule's own time zone (or none) when it is not quiet there,
and whose frequency caps cannot bite; sends whose template is text and
``{{ name.attr }}`` of customer columns, the coupon, the rule or the journey;
coupons from pools without limits; a segment ending in a plain ``wait`` or the
end. Everyone and everything else goes the per-journey way, due now.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.conditions.ast import All, Compare, Condition
from engine.automation.entry import _segments, enter_audience
from engine.automation.facts import Evaluator, _fields, business_now, journey_row
from engine.automation.fastpath import _END, FastPass, _Coupon, _Send
from engine.automation.policy import Counters, Policy
from engine.automation.program import compile_program
from engine.automation.timing import date_trigger_days, in_quiet_hours, period_key, wait_until, zone
from engine.definitions.catalog import JOURNEY_FACTS
from engine.definitions.specs import DateFieldTrigger, RuleSpec, SegmentChangeTrigger, TagSpec, WaitSpec
from engine.storage import automation_repo as repo
from engine.storage import entry_sql
from engine.storage.entry_sql import Piece, SetCoupon, SetPlan, SetSend
from engine.storage.database import transaction
from engine.storage.times import to_db_time
from engine.templates import text_pieces

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from engine.definitions.loader import DefinitionSet

__all__ = ["ChunkRunner", "chunk_ranges", "enter_and_start", "enter_in_chunks", "plan_segment", "run_chunk"]

#: Runs the chunks of one set-based entry somewhere else (Celery workers, see
#: :mod:`web.fleet_ticks`): given the id ranges, returns (entered, counters)
#: per range once every chunk has committed. Raises when one did not, so the
#: occurrence stays unclaimed and the next tick repeats it.
ChunkRunner = Callable[[list[tuple[int, int]]], list[tuple[int, "Counters"]]]


def _listened(definitions: DefinitionSet) -> set[str]:
    return {r.trigger.event for r in definitions.rules.values() if hasattr(r.trigger, "event")}


def _consented(audience: Condition | None, channel: str) -> bool:
    """Whether every customer of ``audience`` has ``consent.<channel>`` (it is
    one of the audience's top-level ``all`` tests): entry and send are one
    transaction, so the send need not look again."""
    items = audience.items if isinstance(audience, All) else (audience,)
    return any(isinstance(c, Compare) and c.field == f"consent.{channel}" and c.op == "eq" and c.value is True
               for c in items)


def _send_plan(rule: RuleSpec, step_id: str, prepared: _Send, coupon: _Coupon | None, key: str,
               prior: dict[tuple[str, str], int],
               now: datetime) -> tuple[SetSend, tuple[tuple[str, str, int, datetime], ...]] | None:
    spec = prepared.spec
    if spec.channel != "sms" or spec.on == "workdays":
        return None
    template = prepared.renderer.template
    pieces = text_pieces(template.body)
    if pieces is None:
        return None
    coupon_ctx: dict[str, Any] = dict(coupon.context) if coupon is not None else {}
    body: list[Piece] = []
    uses_code = False
    for literal, name, attr in pieces:
        if name is None:
            body.append(Piece("text", literal))
        elif name == "customer" and attr in entry_sql.TEXT_COLUMNS:
            body.append(Piece("customer", str(attr)))
        elif name == "coupon" and coupon is not None and attr == "code":
            body.append(Piece("code"))
            uses_code = True
        elif name == "coupon" and coupon is not None and attr in coupon_ctx:
            body.append(Piece("text", str(coupon_ctx[attr])))
        elif name == "rule" and attr in ("id", "title"):
            body.append(Piece("text", str(rule.id if attr == "id" else rule.title)))
        elif name == "journey" and attr == "id":
            body.append(Piece("journey"))
        elif name == "journey" and attr == "period":
            body.append(Piece("text", key))
        else:
            return None
    # The rendered body is stripped: only ends that are not fixed text need it in SQL.
    left = not (body and body[0].kind == "text" and body[0].value[:1].strip())
    right = not (body and body[-1].kind == "text" and body[-1].value[-1:].strip())
    strip = {(True, True): "trim", (True, False): "ltrim", (False, True): "rtrim", (False, False): ""}[(left, right)]
    params: list[tuple[str, tuple[Piece, ...]]] = []
    for name in prepared.renderer.params:
        if name in prepared.top or name == "sign_name":
            return None
        alternatives: list[Piece] = []
        if "customer" in prepared.top and name in prepared.customer_attrs:
            if name not in entry_sql.TEXT_COLUMNS:
                return None
            alternatives.append(Piece("customer", name))
        if "coupon" in prepared.top and coupon is not None:
            if name == "code":
                alternatives.append(Piece("code"))
                uses_code = True
            elif coupon_ctx.get(name) is not None:
                alternatives.append(Piece("text", str(coupon_ctx[name])))
        params.append((name, tuple(alternatives)))
    sms = template.sms
    params_const = {"sign_name": sms.sign_name} if sms is not None and sms.sign_name else {}
    if sms is None:
        params = []
    payload: dict[str, Any] = {"template": prepared.template_id, "connector_type": prepared.connector_type}
    if prepared.template_code:
        payload["template_code"] = prepared.template_code
    caps = []
    for cap in prepared.caps:
        before = prior.get((prepared.dclass, spec.channel), 0)
        caps.append((spec.channel, prepared.dclass, cap.limit - before, to_db_time(now - cap.per)))
    if prepared.caps:
        prior[(prepared.dclass, spec.channel)] = prior.get((prepared.dclass, spec.channel), 0) + 1
    return SetSend(step_id=step_id, channel=spec.channel, connector=prepared.connector_id,
                   template_id=prepared.template_id, delivery_class=prepared.dclass,
                   needs_consent=prepared.dclass == "marketing" and not _consented(rule.audience, spec.channel),
                   body=tuple(body), strip=strip,
                   params=tuple(params), payload=payload, params_const=params_const,
                   coupon_pool=coupon.pool_id if uses_code and coupon is not None else None), tuple(caps)


def plan_segment(session: Session, rule: RuleSpec, *, now: datetime, definitions: DefinitionSet, policy: Policy,
                 key: str) -> tuple[SetPlan, bool] | None:
    """The SQL plan of ``rule``'s first segment for journeys entering at
    ``now``, and whether it also needs "no purchase after now" (an
    ``ordered_since_entry`` exit); None when the segment needs the per-journey path."""
    listened = _listened(definitions)
    evaluate = Evaluator(_segments(definitions))
    program = compile_program(rule)
    fast = FastPass(session, now, definitions, policy, listened, evaluate)
    plan = fast.plan(rule.id, program.start, policy.version_of(rule.id))
    if plan is None or not plan.steps:
        return None
    db_now = to_db_time(now)
    no_future_purchase = False
    if rule.exit_when is not None:
        used: set[str] = set()
        _fields(rule.exit_when, used)
        if not used <= set(JOURNEY_FACTS):
            return None
        fresh = journey_row({}, entered_at=db_now, coupons=[], last_order_at=None, feedback=[], clicks=[])
        if evaluate(rule.exit_when, fresh, now):
            return None
        no_future_purchase = "ordered_since_entry" in used
    coupons: list[SetCoupon] = []
    sends: list[SetSend] = []
    caps: list[tuple[str, str, int, datetime]] = []
    tags: dict[str, bool] = {}
    prior: dict[tuple[str, str], int] = {}
    coupon: _Coupon | None = None
    final: tuple[int, str | None, str, datetime | None, dict[str, Any] | None] | None = None
    for pc, instr, prepared in plan.steps:
        if prepared is _END:
            final = (-1, None, "done", None, None)
            break
        if isinstance(prepared, WaitSpec):
            if prepared.until is not None or prepared.on == "workdays":
                return None
            due = wait_until(now, duration=prepared.duration, until=None, on="", calendar=policy.calendar,
                             tz=zone(rule.timezone))
            final = (pc, instr.step_id, "active", to_db_time(due), {"waiting": pc})
            break
        if isinstance(prepared, _Coupon):
            if prepared.limited or any(c.pool_id == prepared.pool_id for c in coupons):
                return None
            coupons.append(SetCoupon(prepared.pool_id, prepared.prefix, prepared.value, prepared.expires_at))
            coupon = prepared
        elif isinstance(prepared, TagSpec):
            tags.pop(prepared.tag, None)
            tags[prepared.tag] = not prepared.remove
        elif isinstance(prepared, _Send):
            made = _send_plan(rule, instr.step_id, prepared, coupon, key, prior, now)
            if made is None:
                return None
            send, send_caps = made
            sends.append(send)
            caps.extend(send_caps)
        else:
            return None
    if final is None:
        return None
    zone_name: str | None = None
    if rule.quiet_hours and sends:
        if in_quiet_hours(now, rule.quiet_hours, zone(rule.timezone)):
            return None  # everyone in the rule's zone waits: the per-journey path defers them
        zone_name = rule.timezone
    start = program.at(program.start)
    return SetPlan(
        rule_id=rule.id, start_pc=program.start, start_step=start.step_id if start else None,
        coupons=tuple(coupons), sends=tuple(sends),
        add_tags=tuple(t for t, add in tags.items() if add), remove_tags=tuple(t for t, add in tags.items() if not add),
        final_pc=final[0], final_step=final[1], final_status=final[2], final_due=final[3], final_state=final[4],
        zone=zone_name, caps=tuple(caps), no_future_purchase=no_future_purchase,
    ), no_future_purchase


@dataclass(frozen=True)
class _Run:
    """One run's plan and the entry arguments every chunk shares."""

    plan: SetPlan
    key: str
    date_filter: repo.DateFilter | None
    rolling: datetime | None


def _prepare(session: Session, rule: RuleSpec, *, now: datetime, definitions: DefinitionSet, policy: Policy,
             occurrence: datetime) -> _Run | None:
    if isinstance(rule.trigger, SegmentChangeTrigger):
        return None  # entry reads and rewrites the rule's segment memory: one transaction
    if rule.audience_form is not None:
        return None  # records, not customers: the per-journey path
    if isinstance(rule.trigger, DateFieldTrigger):
        target, key = date_trigger_days(rule.trigger, occurrence)
        date_filter: repo.DateFilter | None = repo.DateFilter(rule.trigger.field, target, rule.trigger.yearly)
    else:
        key, date_filter = period_key(rule, occurrence), None
    planned = plan_segment(session, rule, now=now, definitions=definitions, policy=policy, key=key)
    if planned is None:
        return None
    rolling = to_db_time(now - rule.once_per) if rule.once_per is not None else None
    return _Run(planned[0], key, date_filter, rolling)


def _chunk(session: Session, run: _Run, rule: RuleSpec, rule_version: int, *, now: datetime,
           definitions: DefinitionSet, id_range: tuple[int, int] | None) -> tuple[int, Counters]:
    result = entry_sql.enter_and_start(
        session, run.plan, rule_version=rule_version, audience=rule.audience, segments=_segments(definitions),
        now=business_now(now, rule), db_now=to_db_time(now), period_key=run.key, rolling_since=run.rolling, date_filter=run.date_filter,
        limit=rule.audience_limit, id_range=id_range)
    counters = Counters(advanced=result.plain, sent=result.sent, skipped_consent=result.skipped_consent,
                        skipped_other=result.skipped_other,
                        completed=result.plain if run.plan.final_status == "done" else 0)
    return result.entered, counters


def enter_and_start(session: Session, rule: RuleSpec, rule_version: int, *, now: datetime,
                    definitions: DefinitionSet, policy: Policy,
                    occurrence: datetime | None = None) -> tuple[int, Counters]:
    """Enter ``rule``'s audience and, where the SQL path can, run its first
    segment (see the module notes), in the caller's transaction; (entered,
    counters of the steps run here). Journeys left at their first step are
    due now for ``advance_due``."""
    occurrence = occurrence or now
    run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
    if run is None:
        return enter_audience(session, rule, rule_version, now=now, definitions=definitions,
                              occurrence=occurrence), Counters()
    return _chunk(session, run, rule, rule_version, now=now, definitions=definitions, id_range=None)


def chunk_ranges(span: tuple[int, int] | None, step: int) -> list[tuple[int, int]]:
    """The half-open id ranges ``[lo, lo + step)`` covering ``span`` (inclusive)."""
    if span is None:
        return []
    step = max(1, step)
    return [(lo, lo + step) for lo in range(span[0], span[1] + 1, step)]


def run_chunk(session_factory: sessionmaker[Session], rule: RuleSpec, rule_version: int, *, now: datetime,
              definitions: DefinitionSet, policy: Policy, occurrence: datetime,
              id_range: tuple[int, int]) -> tuple[int, Counters]:
    """One chunk of :func:`enter_in_chunks` in its own transaction: what a
    Celery worker runs for one task. Idempotent like every chunk (see there);
    (0, nothing) when the rule no longer takes the SQL path."""
    with session_factory() as session:
        run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
    if run is None:
        return 0, Counters()
    with transaction(session_factory) as session:
        return _chunk(session, run, rule, rule_version, now=now, definitions=definitions, id_range=id_range)


def enter_in_chunks(session_factory: sessionmaker[Session], rule: RuleSpec, rule_version: int, *, now: datetime,
                    definitions: DefinitionSet, policy: Policy,
                    occurrence: datetime | None = None, chunk: int | None = None,
                    runner: ChunkRunner | None = None) -> tuple[int, Counters] | None:
    """:func:`enter_and_start` over the customers ``policy.entry_chunk`` ids
    (``entry_chunk_postgresql`` on PostgreSQL; ``chunk`` when given) at a
    time, one transaction each; None (nothing done) when the SQL path does
    not apply, so the caller enters the usual way. With ``runner`` the chunks
    run there (several processes at once) instead of here one after another.

    A chunk is idempotent (the journey key, the rolling ``once_per`` window,
    and the id mark of :mod:`engine.storage.entry_sql`), so after a crash the
    repeated run enters only the customers of the chunks that did not commit.
    """
    occurrence = occurrence or now
    with session_factory() as session:
        run = _prepare(session, rule, now=now, definitions=definitions, policy=policy, occurrence=occurrence)
        span = entry_sql.customer_id_span(session) if run is not None else None
        if chunk is None:
            chunk = policy.entry_chunk_postgresql if session.get_bind().dialect.name == "postgresql" \
                else policy.entry_chunk
    if run is None:
        return None
    total, entered = Counters(), 0
    if span is None:
        return 0, total
    step = max(1, chunk) if rule.audience_limit is None else span[1] - span[0] + 1
    ranges = chunk_ranges(span, step)
    if runner is not None and len(ranges) > 0:
        for n, counters in runner(ranges):
            entered += n
            total.add(counters)
        return entered, total
    for id_range in ranges:
        with transaction(session_factory) as session:
            n, counters = _chunk(session, run, rule, rule_version, now=now, definitions=definitions,
                                 id_range=id_range)
        entered += n
        total.add(counters)
    return entered, total
