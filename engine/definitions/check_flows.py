"""Checks of approval workflows and automation rules.

Besides references (forms, roles, templates, connectors, pools, segments),
these are the static checks that catch what other tools let users find in
production: a rule whose own steps re-trigger it, a trigger that can never
fire, a marketing message sent without asking for consent, an exclusive
branch with no default path.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from engine.conditions.check import check_condition
from engine.conditions.customer_fields import CUSTOMER_FIELDS
from engine.conditions.parse import parse_condition
from engine.durations import DurationError, parse_duration

from .catalog import (
    BUILTIN_ROLES, CUSTOM_EVENT_PREFIX, CUSTOMER_DATE_FIELDS, EVENTS, JOURNEY_FACTS,
    POOL_FACTS, RECORD_EVENTS, WORKFLOW_EVENTS,
)
from .check_forms import field_kinds
from .context import Context, Problems
from .errors import Path, Problem, did_you_mean, unknown

WORKFLOW_ACTIONS = ("approval", "send", "set_field", "cc", "branch", "parallel")


# ------------------------------------------------------------- shared

def check_timezone(name: str, path: Path) -> Problems:
    try:
        ZoneInfo(name)
        return []
    except (ZoneInfoNotFoundError, ValueError):
        return [Problem(path, "timezone", unknown("time zone", name, available_timezones()))]


def check_role(ctx: Context, role: str, path: Path) -> Problems:
    if role in ctx.ids("role") or role in BUILTIN_ROLES:
        return []
    return [Problem(path, "unknown_ref", unknown("role", role, ctx.ids("role") | BUILTIN_ROLES))]


def check_send(ctx: Context, send: dict, path: Path, form_fields: dict[str, dict] | None) -> Problems:
    problems: Problems = []
    template = ctx.get("template", send["template"])
    if send["template"] not in ctx.ids("template"):
        problems.append(Problem(path + ("template",), "unknown_ref", unknown("template", send["template"], ctx.ids("template"))))
    elif template is not None and send["channel"] not in template["channels"]:
        problems.append(Problem(path + ("channel",), "template_channel",
                                f"template `{send['template']}` is written for {', '.join(template['channels'])}, not {send['channel']}"))
    if "connector" in send:
        connector = ctx.get("connector", send["connector"])
        if send["connector"] not in ctx.ids("connector"):
            problems.append(Problem(path + ("connector",), "unknown_ref", unknown("connector", send["connector"], ctx.ids("connector"))))
        elif connector is not None and connector["channel"] != send["channel"]:
            problems.append(Problem(path + ("connector",), "channel_mismatch",
                                    f"connector `{send['connector']}` sends {connector['channel']}, not {send['channel']}"))
    elif not ctx.connectors_for(send["channel"]):
        problems.append(Problem(path + ("channel",), "no_connector",
                                f"no connector is configured for channel `{send['channel']}`; add a `connector` definition"))
    to = send.get("to")
    if isinstance(to, dict):
        if "role" in to:
            problems.extend(check_role(ctx, to["role"], path + ("to", "role")))
        if "field" in to and form_fields is not None:
            problems.extend(_check_person_field(form_fields, to["field"], path + ("to", "field")))
    return problems


def _check_person_field(form_fields: dict[str, dict], name: str, path: Path) -> Problems:
    if name not in form_fields:
        return [Problem(path, "unknown_ref", unknown("field", name, form_fields))]
    if form_fields[name]["type"] not in ("user", "customer"):
        return [Problem(path, "type", f"field `{name}` must be a user or customer field to choose people; it is {form_fields[name]['type']}")]
    return []


def parse_checked(raw: object, path: Path, kinds: dict, ctx: Context, what: str) -> tuple[object, Problems]:
    """A condition parsed and checked against ``kinds`` (fields it may test); (condition or None, problems)."""
    cond, problems = parse_condition(raw, path)
    if cond is not None:
        problems = problems + check_condition(cond, kinds, segments=ctx.ids("segment"), what=what)
    return cond, problems


def _one_action(step: dict, actions: tuple[str, ...], path: Path) -> tuple[str | None, Problems]:
    present = [a for a in actions if a in step]
    if len(present) == 1:
        return present[0], []
    if not present:
        return None, [Problem(path, "no_action", f"a step needs one of: {', '.join(actions)}")]
    return None, [Problem(path + (present[1],), "two_actions",
                          f"a step does one thing; split `{present[0]}` and `{present[1]}` into two steps", at_key=True)]


# ----------------------------------------------------------- workflows

def _walk_workflow(steps: list, path: Path) -> Iterator[tuple[dict, Path]]:
    for i, step in enumerate(steps):
        yield step, path + (i,)
        if "branch" in step:
            for j, case in enumerate(step["branch"].get("cases", ())):
                yield from _walk_workflow(case["steps"], path + (i, "branch", "cases", j, "steps"))
            if "default" in step["branch"]:
                yield from _walk_workflow(step["branch"]["default"], path + (i, "branch", "default"))
        for j, par in enumerate(step.get("parallel", ())):
            yield from _walk_workflow(par["steps"], path + (i, "parallel", j, "steps"))


def check_workflow(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    form_id = data["form"]
    fields: dict[str, dict] | None = None
    if form_id not in ctx.ids("form"):
        problems.append(Problem(("form",), "unknown_ref", unknown("form", form_id, ctx.ids("form"))))
    elif form_id in ctx.form_fields:
        fields = {f["key"]: f for f in ctx.form_fields[form_id]}
    kinds = field_kinds(fields.values()) if fields is not None else None
    seen: dict[str, Path] = {}
    order: list[str] = []
    for step, path in _walk_workflow(data["steps"], ("steps",)):
        sid = step["id"]
        if sid in seen:
            problems.append(Problem(path + ("id",), "duplicate_step", f"step id `{sid}` is used twice"))
        seen[sid] = path
        order.append(sid)
        action, action_problems = _one_action(step, WORKFLOW_ACTIONS, path)
        problems.extend(action_problems)
        if "when" in step and kinds is not None:
            problems.extend(parse_checked(step["when"], path + ("when",), kinds, ctx, "field")[1])
        if action == "approval":
            problems.extend(_check_approval(ctx, step["approval"], path + ("approval",), fields, order))
        elif action in ("due", "on_overdue"):
            pass
        if action != "approval":
            for k in ("due", "on_overdue", "remind_every"):
                if k in step:
                    problems.append(Problem(path + (k,), "due_without_task", f"`{k}` applies to approval steps only", at_key=True))
        if action == "send":
            problems.extend(check_send(ctx, step["send"], path + ("send",), fields))
        if action == "set_field" and fields is not None:
            problems.extend(_check_set_form_fields(step["set_field"], path + ("set_field",), fields))
        if action == "cc":
            problems.extend(_check_assignees(ctx, step["cc"], path + ("cc",), fields))
        if action == "branch" and "default" not in step["branch"]:
            problems.append(Problem(path + ("branch",), "branch_default",
                                    "a branch needs a `default` path for records that match no case", at_key=True))
        if action == "branch" and kinds is not None:
            for j, case in enumerate(step["branch"]["cases"]):
                problems.extend(parse_checked(case["when"], path + ("branch", "cases", j, "when"), kinds, ctx, "field")[1])
        overdue = step.get("on_overdue", {})
        if "escalate_to" in overdue:
            problems.extend(_check_assignees(ctx, overdue["escalate_to"], path + ("on_overdue", "escalate_to"), fields))
        if overdue and "due" not in step:
            problems.append(Problem(path + ("on_overdue",), "overdue_without_due",
                                    "`on_overdue` needs a `due` duration on the same step", at_key=True))
    problems.extend(_check_flow_shape(ctx, data["steps"], kinds))
    for key in ("on_approve", "on_reject"):
        if key in data:
            actions = data[key] if isinstance(data[key], list) else [data[key]]
            base = (key,) if not isinstance(data[key], list) else None
            for j, act in enumerate(actions):
                p = base if base is not None else (key, j)
                if "send" in act:
                    problems.extend(check_send(ctx, act["send"], p + ("send",), fields))
                if "set_field" in act and fields is not None:
                    problems.extend(_check_set_form_fields(act["set_field"], p + ("set_field",), fields))
                if "cc" in act:
                    problems.extend(_check_assignees(ctx, act["cc"], p + ("cc",), fields))
    return problems


# ------------------------------------------------- flow shape (reachability)

_OP_TEXT = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "eq": "="}


def _atoms(cond: object) -> list[object]:
    """The field tests that must all hold for ``cond`` to hold (through nested ``all``)."""
    from engine.conditions.ast import All, Compare

    if isinstance(cond, Compare):
        return [cond]
    if isinstance(cond, All):
        return [a for item in cond.items for a in _atoms(item)]
    return []


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return Decimal(str(value))


def _show(atom: object) -> str:
    return f"{atom.field} {_OP_TEXT.get(atom.op, atom.op)} {atom.value}"  # type: ignore[attr-defined]


def _contradiction(conditions: list[object]) -> str | None:
    """Why the conditions can never all hold together (number bounds that
    exclude each other, two different ``eq`` values), or None."""
    by_field: dict[str, list[object]] = {}
    for cond in conditions:
        for atom in _atoms(cond):
            by_field.setdefault(atom.field, []).append(atom)  # type: ignore[attr-defined]
    for atoms in by_field.values():
        lows: list[tuple[Decimal, bool, object]] = []
        highs: list[tuple[Decimal, bool, object]] = []
        eqs: list[object] = []
        for atom in atoms:
            op, value = atom.op, atom.value  # type: ignore[attr-defined]
            number = _number(value)
            if op == "eq":
                eqs.append(atom)
                if number is not None:
                    lows.append((number, False, atom))
                    highs.append((number, False, atom))
            elif op in ("gt", "gte") and number is not None:
                lows.append((number, op == "gt", atom))
            elif op in ("lt", "lte") and number is not None:
                highs.append((number, op == "lt", atom))
        for a in eqs:
            for b in eqs:
                if a.value != b.value and _number(a.value) is None:  # type: ignore[attr-defined]
                    return f"`{_show(a)}` and `{_show(b)}` cannot both hold"
        for low, low_strict, la in lows:
            for high, high_strict, ha in highs:
                if low > high or (low == high and (low_strict or high_strict)):
                    return f"`{_show(la)}` and `{_show(ha)}` cannot both hold"
    return None


def _check_flow_shape(ctx: Context, steps: list, kinds: dict | None) -> Problems:
    """Steps that can never run and joins that can never complete: branch
    cases shadowed by an earlier identical case or contradicting the path that
    leads to them, ``when`` conditions that contradict it, ``reject_to`` into
    another branch path or another parallel lane, parallel lanes sharing an id."""
    problems: Problems = []
    scope: dict[str, tuple[tuple[str, ...], str]] = {}  # step id -> (enclosing paths, its own path key)

    def parse(raw: object, path: Path) -> object | None:
        if kinds is None:
            return None
        cond, found = parse_checked(raw, path, kinds, ctx, "field")
        return None if found else cond

    def walk(seq: list, path: Path, guards: list[object], lanes: tuple[str, ...]) -> None:
        for i, step in enumerate(seq):
            here = path + (i,)
            if not isinstance(step, dict) or "id" not in step:
                continue
            scope[step["id"]] = (lanes, "/".join(lanes))
            own = parse(step["when"], here + ("when",)) if "when" in step else None
            if own is not None:
                why = _contradiction(guards + [own])
                if why:
                    problems.append(Problem(here + ("when",), "unreachable",
                                            f"step `{step['id']}` can never run: {why}"))
            branch = step.get("branch")
            if isinstance(branch, dict):
                seen: list[tuple[object, int]] = []
                for j, case in enumerate(branch.get("cases", ())):
                    cpath = here + ("branch", "cases", j)
                    cond = parse(case.get("when"), cpath + ("when",))
                    first = (case.get("steps") or [{}])[0].get("id", "?")
                    if cond is not None:
                        earlier = next((k for c, k in seen if c == cond), None)
                        why = _contradiction(guards + [cond])
                        if earlier is not None:
                            problems.append(Problem(cpath + ("when",), "unreachable",
                                                    f"step `{first}` can never run: case {j + 1} has the same "
                                                    f"condition as case {earlier + 1}, which is chosen first"))
                        elif why:
                            problems.append(Problem(cpath + ("when",), "unreachable",
                                                    f"step `{first}` can never run: {why}"))
                        seen.append((cond, j))
                    walk(case.get("steps", []), cpath + ("steps",), guards + ([cond] if cond is not None else []),
                         lanes + (f"{step['id']}:case{j}",))
                walk(branch.get("default", []), here + ("branch", "default"), guards,
                     lanes + (f"{step['id']}:default",))
            parallel = step.get("parallel")
            if isinstance(parallel, list):
                ids: dict[str, int] = {}
                for j, lane in enumerate(parallel):
                    lane_id = lane.get("id", f"branch_{j + 1}")
                    if lane_id in ids:
                        problems.append(Problem(here + ("parallel", j, "id") if "id" in lane else here + ("parallel", j),
                                                "join", f"lane id `{lane_id}` is used twice in `{step['id']}`: "
                                                f"the join would wait for a lane that can never finish"))
                    ids[lane_id] = j
                    walk(lane.get("steps", []), here + ("parallel", j, "steps"), guards,
                         lanes + (f"{step['id']}|{lane_id}",))

    walk(steps, ("steps",), [], ())
    order = [s.get("id") for s, _ in _walk_workflow(steps, ("steps",))]
    for step, path in _walk_workflow(steps, ("steps",)):
        target = (step.get("approval") or {}).get("reject_to") if isinstance(step.get("approval"), dict) else None
        if target is None or target not in scope or step["id"] not in scope:
            continue
        if order.index(target) >= order.index(step["id"]):
            continue  # not an earlier step: reported by the approval check
        mine, theirs = scope[step["id"]][0], scope[target][0]
        if theirs == mine[:len(theirs)]:
            continue  # the target is on this step's own path: a loop people can break
        split = next(k for k in range(len(theirs)) if k >= len(mine) or theirs[k] != mine[k])
        where = theirs[split]
        if "|" in where:
            owner, lane = where.split("|", 1)
            message = (f"`reject_to: {target}` jumps into lane `{lane}` of parallel step `{owner}` from outside "
                       f"that lane: the join at `{owner}` could never complete")
        else:
            owner = where.split(":", 1)[0]
            message = (f"`reject_to: {target}` names a step on another path of branch `{owner}`: "
                       f"it can never be reached from `{step['id']}`")
        problems.append(Problem(path + ("approval", "reject_to"), "reject_to", message))
    return problems


def _check_assignees(ctx: Context, who: dict, path: Path, fields: dict | None) -> Problems:
    problems: Problems = []
    sources = [k for k in ("role", "users", "field", "manager") if k in who]
    if len(sources) > 1:
        problems.append(Problem(path + (sources[1],), "two_assignee_sources",
                                f"choose people by one of role, users, field or manager, not both `{sources[0]}` and `{sources[1]}`",
                                at_key=True))
    if "role" in who:
        problems.extend(check_role(ctx, who["role"], path + ("role",)))
    if "field" in who and fields is not None:
        problems.extend(_check_person_field(fields, who["field"], path + ("field",)))
    return problems


def _check_approval(ctx: Context, approval: dict, path: Path, fields: dict | None, order: list[str]) -> Problems:
    problems = _check_assignees(ctx, approval, path, fields)
    if not any(k in approval for k in ("role", "users", "field", "manager")):
        problems.append(Problem(path, "no_assignees", "an approval needs approvers: one of role, users, field or manager"))
    mode = approval.get("mode", "any")
    if mode == "threshold" and "threshold" not in approval:
        problems.append(Problem(path + ("mode",), "threshold", "mode `threshold` needs `threshold: N` (approvals needed)"))
    if "threshold" in approval and mode != "threshold":
        problems.append(Problem(path + ("threshold",), "threshold", "`threshold` applies to `mode: threshold`", at_key=True))
    if "threshold" in approval and "users" in approval and approval["threshold"] > len(approval["users"]):
        problems.append(Problem(path + ("threshold",), "threshold",
                                f"threshold {approval['threshold']} can never be reached by {len(approval['users'])} approver(s)"))
    if "reject_to" in approval and approval["reject_to"] not in order[:-1]:
        problems.append(Problem(path + ("reject_to",), "reject_to",
                                unknown("earlier step", approval["reject_to"], order[:-1])))
    return problems


def _check_set_form_fields(values: dict, path: Path, fields: dict[str, dict]) -> Problems:
    problems: Problems = []
    for key, value in values.items():
        if key not in fields:
            problems.append(Problem(path + (key,), "unknown_ref", unknown("field", key, fields), at_key=True))
            continue
        f = fields[key]
        opts = [o["value"] if isinstance(o, dict) else o for o in f.get("options", ())]
        if f["type"] == "select" and value not in opts:
            problems.append(Problem(path + (key,), "unknown_option",
                                    f"unknown option `{value}` of `{key}`{did_you_mean(str(value), [str(o) for o in opts])}"))
    return problems


# ---------------------------------------------------------------- rules

def _walk_journey(steps: list, path: Path, guards: tuple[tuple[str, Path], ...] = ()) -> Iterator[tuple[dict, Path, tuple]]:
    """Each step with its path and the conditions that must hold to reach it
    (as sets of fields required true), for the consent check."""
    from engine.steps.registry import steps as step_types

    for i, step in enumerate(steps):
        yield step, path + (i,), guards
        for kind in step_types():
            if kind.nested and kind.key in step:
                # the first nested list runs when the step's condition holds (``then``): a guard
                first, *rest = kind.nested
                yield from _walk_journey(step.get(first, ()), path + (i, first),
                                         guards + ((kind.key, path + (i, kind.key)),))
                for name in rest:
                    yield from _walk_journey(step.get(name, ()), path + (i, name), guards)


def check_rule(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    audience = None
    journey_kinds = dict(CUSTOMER_FIELDS) | dict(JOURNEY_FACTS)
    if "timezone" in data:
        problems.extend(check_timezone(data["timezone"], ("timezone",)))
    if "customer" in data.get("audience", {}):
        audience, cond_problems = parse_checked(data["audience"]["customer"], ("audience", "customer"),
                                             dict(CUSTOMER_FIELDS), ctx, "customer field")
        problems.extend(cond_problems)
    if "record" in data.get("audience", {}):
        record = data["audience"]["record"]
        if "customer" in data["audience"]:
            problems.append(Problem(("audience", "record"), "audience",
                                    "an audience is customers or records of a form: choose `customer` or `record`",
                                    at_key=True))
        if record["form"] not in ctx.ids("form"):
            problems.append(Problem(("audience", "record", "form"), "unknown_ref",
                                    unknown("form", record["form"], ctx.ids("form"))))
        elif record["form"] in ctx.form_fields:
            kinds = field_kinds(ctx.form_fields[record["form"]])
            journey_kinds = dict(kinds) | dict(JOURNEY_FACTS)  # `if` and `exit_when` test the record's fields
            if "where" in record:
                problems.extend(parse_checked(record["where"], ("audience", "record", "where"), kinds, ctx, "field")[1])
    problems.extend(_check_trigger(ctx, data["trigger"]))
    if "quiet_hours" in data:
        start, end = data["quiet_hours"].split("-")
        if start == end:
            problems.append(Problem(("quiet_hours",), "quiet_hours", "quiet hours start and end at the same time"))
    if "exit_when" in data:
        cond, cond_problems = parse_checked(data["exit_when"], ("exit_when",), journey_kinds, ctx, "field or journey fact")
        problems.extend(cond_problems)
        if cond is not None:
            problems.extend(check_pool_facts(ctx, cond))
    from engine.steps.registry import CheckSite, keys, step as step_type

    actions = keys()
    conditions: dict[Path, object] = {}
    emitted: dict[str, Path] = {}
    for step, path, guards in _walk_journey(data["steps"], ("steps",)):
        action, action_problems = _one_action(step, actions, path)
        problems.extend(action_problems)
        for k in ("then", "else"):
            if k in step and action != "if":
                problems.append(Problem(path + (k,), "then_without_if", f"`{k}` belongs to an `if` step", at_key=True))
        if action is None:
            continue
        kind = step_type(action)
        if kind.emits:
            emitted.setdefault(kind.emits, path + (action,))
        site = CheckSite(ctx, data, step, path + (action,), journey_kinds, audience, guards, conditions)
        problems.extend(kind.check(step[action], site))
    if "experiment" in data:
        from engine.definitions.check_experiment import check_experiment

        problems.extend(check_experiment(ctx, data["experiment"], data["steps"]))
    problems.extend(_check_loop(data, emitted))
    return problems


def check_pool_facts(ctx: Context, cond: object) -> Problems:
    from engine.conditions.ast import All, Any, Compare, Not

    problems: Problems = []
    stack = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, (All, Any)):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, Compare) and node.field in POOL_FACTS and node.op == "eq":
            if node.value not in ctx.ids("coupon_pool"):
                problems.append(Problem(node.path, "unknown_ref", unknown("coupon pool", node.value, ctx.ids("coupon_pool"))))
    return problems


def _check_loop(data: dict, emitted: dict[str, Path]) -> Problems:
    event = data["trigger"].get("event")
    if not event or event not in emitted or "when" in data["trigger"]:
        # with a `when`, the re-entry may be filtered out; the runtime loop
        # guard stops the chains that are not
        return []
    if event in RECORD_EVENTS:
        # only a loop when the step creates records of the very form that triggers the rule
        form = data["trigger"].get("form")
        created = {s["create_record"]["form"] for s, _, _ in _walk_journey(data["steps"], ("steps",)) if "create_record" in s}
        if form is not None and form not in created:
            return []
    return [Problem(emitted[event], "loop",
                    f"this step emits `{event}`, the event that triggers this rule: every run would start it again")]


def _check_trigger(ctx: Context, trigger: dict) -> Problems:
    problems: Problems = []
    kinds = [k for k in ("schedule", "event", "date_field", "segment_change") if k in trigger]
    if len(kinds) != 1:
        if not kinds:
            return [Problem(("trigger",), "trigger", "a trigger needs one of: schedule, event, date_field, segment_change")]
        return [Problem(("trigger", kinds[1]), "trigger",
                        f"a rule has one trigger: choose `{kinds[0]}` or `{kinds[1]}`", at_key=True)]
    kind = kinds[0]
    allowed = {
        "schedule": {"schedule", "timezone"},
        "event": {"event", "form", "workflow", "when"},
        "date_field": {"date_field", "before", "after", "yearly", "at", "timezone"},
        "segment_change": {"segment_change", "timezone"},
    }[kind]
    for key in trigger:
        if key not in allowed:
            problems.append(Problem(("trigger", key), "trigger_key", f"`{key}` does not apply to {kind} triggers", at_key=True))
    if "timezone" in trigger:
        problems.extend(check_timezone(trigger["timezone"], ("trigger", "timezone")))
    if kind == "schedule":
        problems.extend(_check_cron(trigger["schedule"], trigger.get("timezone", "UTC")))
    elif kind == "event":
        event = trigger["event"]
        if event not in EVENTS and not (event.startswith(CUSTOM_EVENT_PREFIX) and len(event) > len(CUSTOM_EVENT_PREFIX)):
            problems.append(Problem(("trigger", "event"), "unknown_event",
                                    unknown("event", event, EVENTS) + f" (or `{CUSTOM_EVENT_PREFIX}NAME` for your own)"))
        if "form" in trigger:
            if event not in RECORD_EVENTS:
                problems.append(Problem(("trigger", "form"), "trigger_key", f"`form` applies to record events, not to `{event}`", at_key=True))
            elif trigger["form"] not in ctx.ids("form"):
                problems.append(Problem(("trigger", "form"), "unknown_ref", unknown("form", trigger["form"], ctx.ids("form"))))
        if "workflow" in trigger:
            if event not in WORKFLOW_EVENTS:
                problems.append(Problem(("trigger", "workflow"), "trigger_key", f"`workflow` applies to workflow events, not to `{event}`", at_key=True))
            elif trigger["workflow"] not in ctx.ids("workflow"):
                problems.append(Problem(("trigger", "workflow"), "unknown_ref", unknown("workflow", trigger["workflow"], ctx.ids("workflow"))))
        if "when" in trigger:
            parsed, parse_problems = parse_condition(trigger["when"], ("trigger", "when"))
            problems.extend(parse_problems)
    elif kind == "date_field":
        field = trigger["date_field"]
        if field not in CUSTOMER_DATE_FIELDS:
            message = (f"`{field}` is not a date field; use one of: {', '.join(sorted(CUSTOMER_DATE_FIELDS))}"
                       if field in CUSTOMER_FIELDS else unknown("customer date field", field, CUSTOMER_DATE_FIELDS))
            problems.append(Problem(("trigger", "date_field"), "date_field", message))
        if "before" in trigger and "after" in trigger:
            problems.append(Problem(("trigger", "after"), "trigger", "choose `before` or `after`, not both", at_key=True))
        offset = trigger.get("before") or trigger.get("after")
        if trigger.get("yearly") and offset:
            try:
                if parse_duration(offset) >= timedelta(days=366):
                    problems.append(Problem(("trigger", "before" if "before" in trigger else "after"), "never_fires",
                                            "a yearly trigger's offset must be less than a year, or it can never fire"))
            except DurationError:
                pass
    elif kind == "segment_change":
        change = trigger["segment_change"]
        for key in ("from", "to"):
            if key in change and change[key] not in ctx.ids("segment"):
                problems.append(Problem(("trigger", "segment_change", key), "unknown_ref", unknown("segment", change[key], ctx.ids("segment"))))
        if change.get("from") == change["to"]:
            problems.append(Problem(("trigger", "segment_change", "to"), "never_fires",
                                    "moving from a segment to the same segment never happens: this trigger can never fire"))
    return problems


_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("weekday", 0, 7))


def _cron_ranges(expr: str) -> str | None:
    """Name the first number outside its field's range ("hour 25 is out of range (0–23)")."""
    for text, (name, low, high) in zip(expr.split(), _CRON_FIELDS):
        for part in text.split(","):
            base = part.split("/")[0]
            for number in re.findall(r"\d+", base):
                if not low <= int(number) <= high:
                    return f"{name} {number} is out of range ({low}–{high})"
    return None


def _check_cron(expr: str, tz: str) -> Problems:
    path = ("trigger", "schedule")
    if len(expr.split()) != 5:
        return [Problem(path, "cron", f"`{expr}` is not a cron expression: write 5 fields, minute hour day month weekday (e.g. \"0 10 * * *\")")]
    out_of_range = _cron_ranges(expr)
    if out_of_range:
        return [Problem(path, "cron", f"`{expr}`: {out_of_range}")]
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    try:
        itr = croniter(expr, datetime(2025, 1, 1, tzinfo=zone))
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        return [Problem(path, "cron", f"`{expr}` is not a valid cron expression: {exc}")]
    try:
        nxt = itr.get_next(datetime)
        if nxt - datetime(2025, 1, 1, tzinfo=zone) > timedelta(days=366 * 8):
            raise CroniterBadDateError("no date")
    except (CroniterBadDateError, StopIteration):
        return [Problem(path, "never_fires", f"`{expr}` names a date that does not exist: this trigger can never fire")]
    return []
