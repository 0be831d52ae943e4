"""The set-based pass of :func:`engine.automation.journeys.advance_due`.

The common shape of a big run is many journeys of one rule at one step: a
win-back run enters 90,000 customers who all issue a coupon, send an SMS and
wait. For such a group (same rule, same program counter) whose instructions up
to the next ``wait`` (or the end) are all ``issue_coupon``, ``send`` to the
customer, ``add_tag`` / ``remove_tag`` or ``wait``, this pass

* loads the group's customers in one query (with the consent flags the sends
  need) and the frequency-cap history in one query per chunk,
* walks each journey through those instructions in a tight Python loop
  (exit_when, consent, address, quiet hours and workdays per time zone, caps,
  one compiled sandboxed render per message),
* writes everything with one statement per kind: coupons, outbox rows
  (``ON CONFLICT DO NOTHING`` on the idempotency key), tags, and the journey
  rows (``UPDATE … FROM``), each over one JSON document of the batch's rows.

Everything else (``if``, webhooks, records, tasks, set_field, sends to staff,
templates that read tags or consent, facts of journeys that entered earlier,
pools near their limits, steps whose events some rule listens to) goes through
the general per-journey path, which this pass mirrors exactly: same counters,
same rows, same idempotency keys, same journey states.
"""

from __future__ import annotations

import base64
import gc
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.automation.facts import Evaluator, _fields, journey_row
from engine.automation.links import survey_link, unsubscribe_link
from engine.automation.policy import Counters, FrequencyCap, Policy
from engine.automation.program import Instruction, compile_program
from engine.automation.timing import end_of_quiet, in_quiet_hours, next_workday_time, wait_until, zone
from engine.definitions.catalog import JOURNEY_FACTS
from engine.definitions.specs import IssueCouponSpec, RuleSpec, SendSpec, TagSpec, WaitSpec
from engine.outbox import OutboxError, pick_connector, provider_template_code
from engine.storage import automation_repo as repo
from engine.storage import outbox_repo
from engine.storage.times import from_db_time, to_db_time
from engine.templates import Renderer, TemplateRenderError, references

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.definitions.loader import DefinitionSet

__all__ = ["FastPass", "RuleLookup"]

#: A rule spec by (id, version): journeys run on the version they entered (see engine.automation.versions).
RuleLookup = Callable[[str, int], "RuleSpec | None"]

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # as engine.automation.journeys
_B32_TO_CODE = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CODE_ALPHABET.encode())
_CODE_LENGTH = 10
_TOP_LEVEL = frozenset({"customer", "coupon", "rule", "journey", "unsubscribe_url", "survey_url", "base_url"})
_CUSTOMER_COLUMNS = repo.fast_customer_columns()
_LOADABLE = frozenset(_CUSTOMER_COLUMNS)
_END = object()
MAX_STEPS = 200  # as MAX_STEPS_PER_PASS of the general path


def random_codes(n: int) -> list[str]:
    """``n`` codes of 10 symbols of the coupon alphabet (50 bits each) from one
    CSPRNG read: base32 of random bytes, mapped onto the alphabet."""
    if n <= 0:
        return []
    raw = base64.b32encode(os.urandom((n * _CODE_LENGTH * 5 + 39) // 40 * 5)).translate(_B32_TO_CODE).decode()
    return [raw[i:i + _CODE_LENGTH] for i in range(0, n * _CODE_LENGTH, _CODE_LENGTH)]


def _display(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    return value


@dataclass(frozen=True)
class _Send:
    spec: SendSpec
    renderer: Renderer
    connector_id: str
    connector_type: str
    dclass: str
    caps: tuple[FrequencyCap, ...]
    top: frozenset[str]                 # context names to build
    customer_attrs: tuple[str, ...]     # customer fields the template reads
    template_id: str
    template_code: str | None = None    # the SMS provider's pre-approved template code


@dataclass(frozen=True)
class _Coupon:
    pool_id: str
    prefix: str
    value: Any
    expires_at: datetime | None         # naive UTC
    context: Mapping[str, Any]          # ``coupon`` in templates, without the code
    limited: bool


@dataclass(frozen=True)
class _Plan:
    rule: RuleSpec
    steps: tuple[tuple[int, Instruction, Any], ...]   # (pc, instruction, prepared) … ending in a wait or _END
    needs_fresh: bool                   # exit_when reads journey facts: only journeys entering now
    consent_channels: frozenset[str]
    coupon_steps: int
    columns: tuple[str, ...]            # customer columns to load
    exit_fields: tuple[str, ...]        # customer fields exit_when reads


class FastPass:
    """Plans and runs the set-based groups of one batch (see the module notes)."""

    def __init__(self, session: Session, now: datetime, definitions: DefinitionSet, policy: Policy,
                 listened: set[str], evaluate: Evaluator, rule_of: RuleLookup | None = None):
        self.session, self.now, self.db_now = session, now, to_db_time(now)
        self.defs, self.policy, self.listened, self.evaluate = definitions, policy, listened, evaluate
        self.rule_of: RuleLookup = rule_of or (lambda rule_id, _version: definitions.rules.get(rule_id))
        self._plans: dict[tuple[str, int, bool, int], _Plan | None] = {}
        self._tz: dict[tuple[str, str], Any] = {}
        self._quiet: dict[tuple[Any, Any], datetime | None] = {}
        self._workday: dict[Any, datetime] = {}
        self._wait: dict[tuple[str, int, Any], datetime] = {}

    # -- planning ---------------------------------------------------------------------

    def split(self, journeys: list[repo.JourneyRow]) -> tuple[dict[tuple[str, int, bool, int],
                                                                  list[repo.JourneyRow]], list[repo.JourneyRow]]:
        """Journeys the fast path takes, grouped by (rule, pc, resumed, rule version), and the rest."""
        groups: dict[tuple[str, int, bool, int], list[repo.JourneyRow]] = {}
        rest: list[repo.JourneyRow] = []
        for j in journeys:
            if j.subject_type != "customer":
                rest.append(j)
                continue
            resumed = bool(j.state) and j.state.get("waiting") == j.step_index  # type: ignore[union-attr]
            key = (j.rule_id, j.step_index, resumed, j.rule_version)
            if key not in self._plans:
                self._plans[key] = self._plan(*key)
            plan = self._plans[key]
            if plan is None or (plan.needs_fresh and j.entered_at < self.db_now):
                rest.append(j)
            else:
                groups.setdefault(key, []).append(j)
        return groups, rest

    def plan(self, rule_id: str, pc: int, version: int) -> _Plan | None:
        """The plan of journeys of ``rule_id`` (on ``version``) entering at ``pc`` (None: not for this pass)."""
        return self._plan(rule_id, pc, False, version)

    def _plan(self, rule_id: str, pc: int, resumed: bool, version: int) -> _Plan | None:
        rule = self.rule_of(rule_id, version)
        if rule is None:
            return None
        needs_fresh = False
        exit_fields: set[str] = set()
        if rule.exit_when is not None:
            used: set[str] = set()
            _fields(rule.exit_when, used)
            if any(f == "tags" or f.startswith(("consent.", "segment:")) for f in used):
                return None
            needs_fresh = bool(used & set(JOURNEY_FACTS))
            exit_fields = (used - set(JOURNEY_FACTS)) | {"last_purchase_at"}  # journey_row reads it
            if not exit_fields <= _LOADABLE:
                return None
        program = compile_program(rule)
        if resumed:
            first = program.at(pc)
            if first is None or not isinstance(first.action, WaitSpec):
                return None
            pc = first.next
        steps: list[tuple[int, Instruction, Any]] = []
        channels: set[str] = set()
        columns: set[str] = {"timezone", *exit_fields}
        coupon = False
        coupons = 0
        for _ in range(MAX_STEPS):
            instr = program.at(pc)
            if instr is None:
                steps.append((pc, None, _END))  # type: ignore[arg-type]
                break
            action = instr.action
            if isinstance(action, WaitSpec):
                steps.append((pc, instr, action))
                break
            if isinstance(action, IssueCouponSpec):
                prepared: Any = self._prepare_coupon(rule, action)
                coupon, coupons = True, coupons + 1
            elif isinstance(action, SendSpec):
                prepared = self._prepare_send(rule, action, coupon)
                if prepared is not None:
                    if prepared.dclass == "marketing":
                        channels.add(action.channel)
                    columns.update(prepared.customer_attrs)
                    columns.update({"sms": ("phone",), "email": ("email",)}.get(action.channel,
                                                                                 ("external_id", "attrs")))
            elif isinstance(action, TagSpec):
                prepared = action if "customer.tagged" not in self.listened else None
            else:
                return None
            if prepared is None:
                return None
            steps.append((pc, instr, prepared))
            pc = instr.next
        else:
            return None
        return _Plan(rule, tuple(steps), needs_fresh, frozenset(channels), coupons, tuple(sorted(columns)),
                     tuple(sorted(exit_fields)))

    def _prepare_coupon(self, rule: RuleSpec, spec: IssueCouponSpec) -> _Coupon | None:
        pool = self.defs.coupon_pools.get(spec.pool)
        if pool is None or "coupon.issued" in self.listened:
            return None
        value = spec.value if spec.value is not None else pool.value
        expires_in = spec.expires_in or pool.expires_in
        expires = to_db_time(self.now + expires_in) if expires_in else None
        context = {
            "value": _display(value), "pool": pool.id,
            "min_order": _display(pool.min_order) if pool.min_order is not None else "",
            "expires_at": from_db_time(expires).astimezone(zone(rule.timezone)).date().isoformat() if expires else "",
        }
        return _Coupon(pool.id, pool.code_prefix or pool.id.upper()[:8], value, expires, context,
                       pool.max_issued is not None or pool.budget is not None)

    def _prepare_send(self, rule: RuleSpec, spec: SendSpec, has_coupon: bool) -> _Send | None:
        if spec.to is not None and spec.to.kind != "customer":
            return None
        if spec.channel not in ("sms", "email", "wecom") or "message.sent" in self.listened:
            return None
        template = self.defs.templates.get(spec.template)
        if template is None:
            return None
        try:
            connector = pick_connector(self.defs, spec.channel, spec.connector)
            renderer = Renderer(template, spec.channel)
            refs = references(renderer.sources())
        except (OutboxError, TemplateRenderError):
            return None
        params = set(renderer.params)
        top = set(refs) | (params & _TOP_LEVEL)
        if not top <= _TOP_LEVEL or ("coupon" in top and not has_coupon):
            return None
        attrs = refs.get("customer", frozenset())
        if attrs is None:
            return None
        attrs = frozenset(attrs) | (params & _LOADABLE)
        if not attrs <= _LOADABLE:
            return None
        if params:
            top.add("customer")
            if has_coupon:
                top.add("coupon")
        dclass = "marketing" if "marketing" in (rule.delivery_class, template.delivery_class) else "transactional"
        caps = tuple(c for c in self.policy.caps if c.delivery_class == dclass)
        return _Send(spec, renderer, connector.id, connector.type, dclass, caps, frozenset(top),
                     tuple(sorted(attrs)), template.id, provider_template_code(template, connector))

    # -- running ----------------------------------------------------------------------

    def run(self, key: tuple[str, int, bool, int], journeys: list[repo.JourneyRow], counters: Counters) -> bool:
        """Advance one group and write it. False (nothing written) when a pool's
        limits could bite: the general path then takes the group."""
        plan = self._plans[key]
        assert plan is not None
        s = self.session
        for _, _, prepared in plan.steps:
            if isinstance(prepared, _Coupon) and prepared.limited:
                pool = self.defs.coupon_pools[prepared.pool_id]
                count, total = repo.pool_issued(s, prepared.pool_id)
                n = len(journeys)
                if (pool.max_issued is not None and count + n > pool.max_issued) or \
                        (pool.budget is not None and Decimal(total) + prepared.value * n > pool.budget):
                    return False
        names, customers = repo.fast_customers(s, sorted({j.subject_id for j in journeys}), plan.columns,
                                               plan.consent_channels)
        index = {n: i for i, n in enumerate(names)}
        recent: dict[tuple[int, str], list[datetime]] = {}
        caps = [cap for _, _, p in plan.steps if isinstance(p, _Send) for cap in p.caps]
        if caps and customers:
            longest = max(c.per for c in caps)
            for dclass in {c.delivery_class for c in caps}:
                found = outbox_repo.count_recent(s, list(customers), channels=("sms", "email", "wecom"),
                                                 delivery_class=dclass, since=to_db_time(self.now - longest))
                for (cid, channel), times in found.items():
                    recent.setdefault((cid, f"{dclass}:{channel}"), []).extend(times)
        collect = gc.isenabled()
        gc.disable()  # the walk allocates only acyclic rows: spare it the collector's passes
        try:
            for _attempt in range(5):
                mine = Counters()
                out = self._walk(plan, journeys, customers, index, recent, mine)
                if self._flush(plan, out):
                    counters.add(mine)
                    return True
                # A code clashed with an existing coupon: redo the group with new codes.
        finally:
            if collect:
                gc.enable()
        raise RuntimeError("coupon codes clashed five times in a row")

    def _tz_of(self, name: Any, rule: RuleSpec) -> Any:
        key = (str(name or ""), rule.timezone)
        tz = self._tz.get(key)
        if tz is None:
            tz = self._tz[key] = zone(key[0], rule.timezone)
        return tz

    def _walk(self, plan: _Plan, journeys: list[repo.JourneyRow], customers: dict[int, tuple[Any, ...]],
              index: dict[str, int], recent: dict[tuple[int, str], list[datetime]], counters: Counters) -> dict[str, Any]:
        rule, now, db_now, policy = plan.rule, self.now, self.db_now, self.policy
        codes = iter(random_codes(len(journeys) * plan.coupon_steps))
        coupons: dict[str, list[list[Any]]] = {}
        outbox: list[list[Any]] = []
        add_tags: set[tuple[int, str]] = set()
        remove_tags: set[tuple[int, str]] = set()
        updates: list[list[Any]] = []
        recent = {k: list(v) for k, v in recent.items()}
        i_tz, i_phone, i_email = index["timezone"], index.get("phone"), index.get("email")
        i_ext, i_attrs = index.get("external_id"), index.get("attrs")
        exit_fields = [(f, index[f]) for f in plan.exit_fields]
        exit_when = rule.exit_when
        due_text: dict[datetime, str | None] = {}
        rule_ctx = {"id": rule.id, "title": rule.title}
        quiet = rule.quiet_hours
        for j in journeys:
            counters.advanced += 1
            state = dict(j.state) if j.state else {}
            cust = customers.get(j.subject_id)
            pc_out, sid_out, status, due = j.step_index, j.step_id, "active", None
            if cust is None:
                status = "exited"
                state["exit"] = "subject deleted"
                counters.exited += 1
                updates.append([j.id, pc_out, sid_out, status, None, state or None])
                continue
            if exit_when is not None:
                row = journey_row({f: cust[i] for f, i in exit_fields}, entered_at=j.entered_at, coupons=[],
                                  last_order_at=None, feedback=[], clicks=[])
                if self.evaluate(exit_when, row, now):
                    state["exit"] = "exit_when"
                    counters.exited += 1
                    updates.append([j.id, pc_out, sid_out, "exited", None, state or None])
                    continue
            tz = self._tz_of(cust[i_tz], rule)
            coupon_ctx: dict[str, Any] | None = None
            for pc, instr, prepared in plan.steps:
                if prepared is _END:
                    status, pc_out, sid_out = "done", -1, None
                    counters.completed += 1
                    state.pop("waiting", None)
                    break
                pc_out, sid_out = pc, instr.step_id
                if isinstance(prepared, WaitSpec):
                    state["waiting"] = pc
                    wkey = (rule.id, pc, tz)
                    due = self._wait.get(wkey)
                    if due is None:
                        due = self._wait[wkey] = wait_until(now, duration=prepared.duration, until=prepared.until,
                                                            on=prepared.on, calendar=policy.calendar, tz=tz)
                    break
                if isinstance(prepared, _Coupon):
                    code = prepared.prefix + next(codes)
                    coupons.setdefault(prepared.pool_id, []).append([j.id, j.subject_id, code, prepared])
                    coupon_ctx = {"code": code, **prepared.context}
                    continue
                if isinstance(prepared, TagSpec):
                    pair = (j.subject_id, prepared.tag)
                    if prepared.remove:
                        remove_tags.add(pair)
                        add_tags.discard(pair)
                    else:
                        add_tags.add(pair)
                        remove_tags.discard(pair)
                    continue
                # a send to the customer
                spec = prepared.spec
                channel = spec.channel
                if prepared.dclass == "marketing" and not cust[index[f"consent.{channel}"]]:
                    counters.skipped_consent += 1
                    continue
                if channel == "sms":
                    address = cust[i_phone]
                elif channel == "email":
                    address = cust[i_email]
                else:
                    attrs = cust[i_attrs] or {}
                    wecom = attrs.get("wecom_external_userid") if isinstance(attrs, Mapping) else None
                    address = wecom or cust[i_ext] or f"customer:{j.subject_id}"
                if not address:
                    counters.skipped_other += 1
                    continue
                if quiet:
                    qkey = (quiet, tz)
                    if qkey not in self._quiet:
                        self._quiet[qkey] = end_of_quiet(now, quiet, tz) if in_quiet_hours(now, quiet, tz) else None
                    if self._quiet[qkey] is not None:
                        counters.deferred_quiet += 1
                        due = self._quiet[qkey]
                        break
                if spec.on == "workdays":
                    moved = self._workday.get(tz)
                    if moved is None:
                        moved = self._workday[tz] = next_workday_time(now, policy.calendar, tz)
                    if moved != now:
                        counters.deferred_quiet += 1
                        due = moved
                        break
                cap_key = (j.subject_id, f"{prepared.dclass}:{channel}")
                capped: datetime | None = None
                skip = False
                for cap in prepared.caps:
                    window_start = to_db_time(now - cap.per)
                    times = [t for t in recent.get(cap_key, ()) if t >= window_start]
                    if len(times) >= cap.limit:
                        if policy.cap_action == "skip":
                            counters.skipped_cap += 1
                            skip = True
                        else:
                            counters.deferred_cap += 1
                            free_at = from_db_time(sorted(times)[len(times) - cap.limit]) + cap.per + timedelta(seconds=1)
                            capped = max(free_at, now + timedelta(minutes=1))
                        break
                if skip:
                    continue
                if capped is not None:
                    due = capped
                    break
                ctx: dict[str, Any] = {}
                top = prepared.top
                if "customer" in top:
                    ctx["customer"] = {a: _display(cust[index[a]]) for a in prepared.customer_attrs}
                if "coupon" in top:
                    ctx["coupon"] = coupon_ctx
                if "rule" in top:
                    ctx["rule"] = rule_ctx
                if "journey" in top:
                    ctx["journey"] = {"id": j.id, "period": j.period_key}
                if "unsubscribe_url" in top:
                    ctx["unsubscribe_url"] = unsubscribe_link(policy, j.subject_type, j.subject_id, now)
                if "survey_url" in top:
                    ctx["survey_url"] = survey_link(policy, rule, j.subject_type, j.subject_id, now)
                if "base_url" in top:
                    ctx["base_url"] = policy.base_url
                try:
                    message = prepared.renderer(ctx)
                except TemplateRenderError as exc:
                    status = "error"
                    state["error"] = str(exc)
                    counters.errors += 1
                    break
                payload: dict[str, Any] = {"template": prepared.template_id, "connector_type": prepared.connector_type}
                if prepared.template_code:
                    payload["template_code"] = prepared.template_code
                if message.html is not None:
                    payload["html"] = message.html
                if message.params:
                    payload["params"] = dict(message.params)
                outbox.append([channel, prepared.connector_id, str(address),
                               (message.subject or None) and message.subject[:255], message.body, payload,
                               f"{rule.id}:customer:{j.subject_id}:{j.period_key}:{instr.step_id}", prepared.dclass,
                               rule.id, j.id, j.subject_id, prepared.template_id])
                counters.sent += 1
                if prepared.caps:
                    recent.setdefault(cap_key, []).append(db_now)
            if due is not None:
                text = due_text.get(due)
                if text is None:
                    text = due_text[due] = repo.db_time_text(to_db_time(due))
            else:
                text = None
            updates.append([j.id, pc_out, sid_out, status, text, state or None])
        return {"coupons": coupons, "outbox": outbox, "add_tags": add_tags, "remove_tags": remove_tags,
                "updates": updates}

    def _flush(self, plan: _Plan, out: dict[str, Any]) -> bool:
        s = self.session
        issued: list[list[Any]] = []
        for pool_id, rows in out["coupons"].items():
            prepared: _Coupon = rows[0][3]
            n = repo.insert_coupon_rows(s, [r[:3] for r in rows], pool_id=pool_id, value=prepared.value,
                                        issued_at=self.db_now, expires_at=prepared.expires_at)
            issued += [[r[0], r[2]] for r in rows]
            if n < len(rows):  # a code clashed with an existing one: take this group's back, retry
                repo.delete_coupon_codes(s, issued)
                return False
        outbox_repo.insert_rows(s, out["outbox"], now=self.db_now)
        repo.add_tag_rows(s, out["add_tags"])
        repo.remove_tag_rows(s, out["remove_tags"])
        repo.update_journey_rows(s, out["updates"])
        return True
