"""Raw, checked definition data → immutable specs.

Runs only on definitions that passed every check, so it converts and never
validates: a failure here is a bug in a check, not a user error.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

from engine.conditions.ast import Condition
from engine.conditions.parse import parse_condition
from engine.durations import parse_duration

from . import specs as s
from .check_calendar import WEEKDAY_NAMES
from .check_coupons import local_time
from .check_forms import expand_fields
from .context import Context
from .loyalty import build_points_policy, build_tier


def condition_of(raw: object) -> Condition | None:
    if raw is None:
        return None
    return required_condition(raw)


def required_condition(raw: object) -> Condition:
    """A condition the schema requires (checked before specs are built)."""
    cond, problems = parse_condition(raw)
    assert cond is not None and not problems, problems
    return cond


def duration_of(raw: object):
    return parse_duration(raw) if raw is not None else None


def time_of(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def _range(text: str | None) -> tuple[time, time] | None:
    if not text:
        return None
    start, end = text.split("-")
    return time_of(start), time_of(end)


def frozen(value: object) -> object:
    if isinstance(value, dict):
        return frozen_map(value)
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def frozen_map(value: Mapping[str, object]) -> Mapping[str, object]:
    """A read-only copy of an object the schema requires, nested lists and objects frozen too."""
    return MappingProxyType({k: frozen(v) for k, v in value.items()})


def money_of(value: object) -> Decimal | None:
    return required_money(value) if value is not None else None


def required_money(value: object) -> Decimal:
    """An amount the schema requires (checked before specs are built)."""
    return Decimal(str(value))


def _size(text: str | None) -> int | None:
    if not text:
        return None
    return int(text[:-2]) * (1024 if text.endswith("KB") else 1024 * 1024)


def build_field(f: dict) -> s.FieldSpec:
    options = tuple(
        s.OptionSpec(o["value"], o.get("label", str(o["value"])), o.get("label_en")) if isinstance(o, dict)
        else s.OptionSpec(o, str(o))
        for o in f.get("options", ())
    )
    return s.FieldSpec(
        key=f["key"], type=f["type"], label=f.get("label", f["key"]), label_en=f.get("label_en"),
        required=f.get("required", False), default=frozen(f.get("default")), min=f.get("min"), max=f.get("max"),
        min_length=f.get("min_length"), max_length=f.get("max_length"), pattern=f.get("pattern"),
        pattern_message=f.get("pattern_message"), options=options, unique=f.get("unique", False),
        help=f.get("help"), help_en=f.get("help_en"), placeholder=f.get("placeholder"),
        readonly=f.get("readonly", False), visible_if=condition_of(f.get("visible_if")),
        required_if=condition_of(f.get("required_if")), after=f.get("after"), before=f.get("before"),
        phone_region=f.get("phone_region", "any"), accept=tuple(f.get("accept", ())),
        max_size_bytes=_size(f.get("max_size")), fields=tuple(build_field(x) for x in f.get("fields", ())),
        min_rows=f.get("min_rows"), max_rows=f.get("max_rows"), display=f.get("display", "input"),
    )


def build_form(ctx: Context, d: dict, src: s.Source) -> s.FormSpec:
    fields = tuple(build_field(f) for f, _ in expand_fields(ctx, d["fields"], ("fields",), []))
    edit = d.get("edit", {})
    return s.FormSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
        fields=fields, submit_roles=tuple(d.get("submit_roles", ())), view_roles=tuple(d.get("view_roles", ())),
        edit_by=edit.get("by", "submitter"), edit_until=edit.get("until", "workflow_started"),
        public=d.get("public", False), source=src,
        customer_field=(d.get("customer") or {}).get("field"),
        on_submit=tuple(s.TagSpec(step["add_tag"]) if "add_tag" in step else s.EmitSpec(step["emit"])
                        for step in d.get("on_submit", ())),
        redeems_coupon=MappingProxyType(dict(d["redeems_coupon"])) if d.get("redeems_coupon") else None,
        campaign=MappingProxyType(dict(d["campaign"])) if d.get("campaign") else None,
    )


def build_fieldset(ctx: Context, d: dict, src: s.Source) -> s.FieldsetSpec:
    fields = tuple(build_field(f) for f, _ in expand_fields(ctx, d["fields"], ("fields",), [], (d["id"],)))
    return s.FieldsetSpec(id=d["id"], title=d.get("title"), fields=fields, source=src)


def build_role(ctx: Context, d: dict, src: s.Source) -> s.RoleSpec:
    return s.RoleSpec(id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
                      source=src, permissions=tuple(d.get("permissions", ())))


def build_segment(ctx: Context, d: dict, src: s.Source) -> s.SegmentSpec:
    return s.SegmentSpec(id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
                         condition=required_condition(d["condition"]), source=src)


def build_coupon_pool(ctx: Context, d: dict, src: s.Source) -> s.CouponPoolSpec:
    return s.CouponPoolSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), value=required_money(d["value"]),
        min_order=money_of(d.get("min_order")), currency=d.get("currency", "CNY"), expires_in=duration_of(d.get("expires_in")),
        budget=money_of(d.get("budget")), max_issued=d.get("max_issued"), code_prefix=d.get("code_prefix"),
        cost_per_coupon=money_of(d.get("cost_per_coupon")), source=src, redemption=_redemption(d),
    )


def _redemption(d: dict) -> s.RedemptionRules:
    limits, velocity, blacklist = d.get("limits") or {}, d.get("velocity") or {}, d.get("blacklist") or {}
    start, until = d.get("valid_from"), d.get("valid_until")
    return s.RedemptionRules(
        valid_from=local_time(start) if start else None, valid_until=local_time(until, end=True) if until else None,
        per_customer=limits.get("per_customer"), per_phone=limits.get("per_phone"),
        per_store_per_hour=velocity.get("per_store_per_hour"), per_device_per_hour=velocity.get("per_device_per_hour"),
        new_customers_only=bool(d.get("new_customers_only", False)), stackable=bool(d.get("stackable", True)),
        blacklist_phones=frozenset(blacklist.get("phones") or ()),
        blacklist_devices=frozenset(blacklist.get("devices") or ()),
    )


def build_template(ctx: Context, d: dict, src: s.Source) -> s.TemplateSpec:
    sms = d.get("sms")
    wecom = d.get("wecom")
    return s.TemplateSpec(
        id=d["id"], title=d.get("title"), channels=tuple(d["channels"]), body=d["body"],
        delivery_class=d.get("class", "marketing"), locale=d.get("locale", "zh"), subject=d.get("subject"),
        html=d.get("html"),
        sms=s.SmsTemplateSpec(sms.get("sign_name"), sms.get("aliyun_template_code"), sms.get("tencent_template_id"),
                              tuple(sms.get("params", ()))) if sms else None,
        wecom=s.WecomTemplateSpec(wecom.get("msgtype", "text"), wecom.get("title"), wecom.get("url"),
                                  wecom.get("btntxt")) if wecom else None,
        source=src,
    )


def build_connector(ctx: Context, d: dict, src: s.Source) -> s.ConnectorSpec:
    rate = d.get("rate_limit", {})
    return s.ConnectorSpec(
        id=d["id"], type=d["type"], channel=d["channel"], title=d.get("title"), default=d.get("default", False),
        enabled=d.get("enabled", True), settings=frozen_map(d.get("settings", {})),
        secrets=MappingProxyType({k: v["env"] for k, v in d.get("secrets", {}).items()}),
        per_second=rate.get("per_second"), per_minute=rate.get("per_minute"),
        per_recipient_per_minute=rate.get("per_recipient_per_minute"),
        send_window=_range(d.get("send_window")), max_attempts=d.get("max_attempts", 8), source=src,
        price_per_segment=money_of((d.get("price") or {}).get("per_segment")),
        price_per_thousand=money_of((d.get("price") or {}).get("per_thousand")),
        price_per_message=money_of((d.get("price") or {}).get("per_message")),
    )


def recipient_of(raw: str | Mapping[str, object] | None) -> s.Recipient | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return s.Recipient(raw)
    (kind, value), = raw.items()
    return s.Recipient(kind, tuple(value) if isinstance(value, list) else value)


def send_spec(d: dict) -> s.SendSpec:
    return s.SendSpec(channel=d["channel"], template=d["template"], to=recipient_of(d.get("to")),
                      connector=d.get("connector"), on=d.get("on", "any_day"))


def _assignees(d: dict) -> s.Assignees:
    return s.Assignees(role=d.get("role"), users=tuple(d.get("users", ())), field=d.get("field"),
                       manager=bool(d.get("manager", False)))


def _workflow_action(d: dict) -> s.WorkflowAction:
    if "send" in d:
        return send_spec(d["send"])
    if "set_field" in d:
        return s.SetFieldSpec(frozen_map(d["set_field"]))
    if "cc" in d:
        return _assignees(d["cc"])
    if "approval" in d:
        a = d["approval"]
        return s.ApprovalSpec(assignees=_assignees(a), mode=a.get("mode", "any"), threshold=a.get("threshold"),
                              allow=tuple(a.get("allow", ("return", "transfer", "add_approver"))),
                              reject_to=a.get("reject_to"), allow_self_approval=a.get("allow_self_approval"))
    if "branch" in d:
        b = d["branch"]
        return s.BranchSpec(
            cases=tuple(s.BranchCase(required_condition(c["when"]), _workflow_steps(c["steps"])) for c in b["cases"]),
            default=_workflow_steps(b.get("default", ())),
        )
    if "parallel" in d:
        return s.ParallelSpec(tuple(
            s.ParallelBranch(p.get("id", f"branch_{i + 1}"), _workflow_steps(p["steps"]))
            for i, p in enumerate(d["parallel"])
        ))
    raise AssertionError(f"no action in {d}")


def overdue_of(overdue: dict | None) -> s.OverdueSpec | None:
    """``on_overdue`` of an approval step or a rule's ``create_task``."""
    if not overdue:
        return None
    return s.OverdueSpec(remind=overdue.get("remind", True),
                         escalate_to=_assignees(overdue["escalate_to"]) if "escalate_to" in overdue else None,
                         auto=overdue.get("auto"))


def _workflow_steps(steps: list) -> tuple[s.WorkflowStep, ...]:
    out = []
    for d in steps:
        out.append(s.WorkflowStep(
            id=d["id"], action=_workflow_action(d), title=d.get("title"), title_en=d.get("title_en"),
            when=condition_of(d.get("when")), due=duration_of(d.get("due")), remind_every=duration_of(d.get("remind_every")),
            on_overdue=overdue_of(d.get("on_overdue")),
        ))
    return tuple(out)


def _actions(raw: list[dict] | dict | None) -> tuple[s.WorkflowAction, ...]:
    if raw is None:
        return ()
    return tuple(_workflow_action(a) for a in (raw if isinstance(raw, list) else [raw]))


def build_workflow(ctx: Context, d: dict, src: s.Source) -> s.WorkflowSpec:
    return s.WorkflowSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"), form=d["form"],
        steps=_workflow_steps(d["steps"]), on_approve=_actions(d.get("on_approve")),
        on_reject=_actions(d.get("on_reject")), source=src,
        allow_self_approval=bool(d.get("allow_self_approval", False)),
    )


def _trigger(d: dict, rule_tz: str) -> s.Trigger:
    if "schedule" in d:
        return s.ScheduleTrigger(d["schedule"], d.get("timezone", rule_tz))
    if "event" in d:
        return s.EventTrigger(d["event"], d.get("form"), d.get("workflow"), condition_of(d.get("when")))
    if "date_field" in d:
        offset = timedelta(0)
        if "before" in d:
            offset = parse_duration(d["before"])
        elif "after" in d:
            offset = -parse_duration(d["after"])
        return s.DateFieldTrigger(d["date_field"], offset, d.get("yearly", False), time_of(d.get("at", "10:00")),
                                  d.get("timezone", rule_tz))
    change = d["segment_change"]
    return s.SegmentChangeTrigger(to=change["to"], from_=change.get("from"))


def journey_steps(steps: Sequence[Mapping[str, Any]], prefix: str) -> tuple[s.JourneyStep, ...]:
    """A rule's (or an ``if`` branch's) steps: each built by its step type
    (:mod:`engine.steps.registry`); ids are the author's or ``{prefix}{n}``."""
    from engine.steps.registry import BuildSite, keys, step

    known = keys()
    out = []
    for i, d in enumerate(steps, start=1):
        sid = d.get("id", f"{prefix}{i}")
        key = next(k for k in known if k in d)
        out.append(s.JourneyStep(sid, step(key).build(d[key], BuildSite(d, sid, journey_steps))))
    return tuple(out)


def build_rule(ctx: Context, d: dict, src: s.Source) -> s.RuleSpec:
    tz = d.get("timezone", "Asia/Shanghai")
    once = d.get("once_per")
    return s.RuleSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
        enabled=d.get("enabled", True), campaign=d.get("campaign"), trigger=_trigger(d["trigger"], tz),
        steps=journey_steps(d["steps"], "s"), audience=condition_of(d.get("audience", {}).get("customer")),
        audience_limit=d.get("audience", {}).get("limit"),
        audience_form=d.get("audience", {}).get("record", {}).get("form"),
        record_audience=condition_of(d.get("audience", {}).get("record", {}).get("where")),
        once_per=parse_duration(once) if once not in (None, "ever") else None, once_ever=once == "ever",
        quiet_hours=_range(d.get("quiet_hours")), timezone=tz, delivery_class=d.get("class", "marketing"),
        catch_up=d.get("catch_up", "fire_late"), exit_when=condition_of(d.get("exit_when")), source=src,
        experiment=experiment_of(d.get("experiment")),
    )


def experiment_of(d: dict | None) -> s.ExperimentSpec | None:
    """A rule's ``experiment:`` (holdout and weighted variants, see engine/experiments.py)."""
    if not d:
        return None
    variants = tuple(
        s.VariantSpec(key=v["key"], weight=v.get("weight", 1), title=v.get("title"), title_en=v.get("title_en"),
                      templates=MappingProxyType(dict(v.get("templates", {}))),
                      pools=MappingProxyType(dict(v.get("pools", {}))), coupon_value=money_of(v.get("coupon_value")))
        for v in d.get("variants", ()))
    return s.ExperimentSpec(holdout=d.get("holdout", 0), salt=str(d.get("salt", "")), variants=variants)


def build_calendar(ctx: Context, d: dict, src: s.Source) -> s.CalendarSpec:
    return s.CalendarSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), timezone=d.get("timezone", "Asia/Shanghai"),
        weekend=frozenset(WEEKDAY_NAMES.index(w) for w in d.get("weekends", ("sat", "sun"))),
        holidays=frozenset(date.fromisoformat(x) for x in d.get("holidays", ())),
        workdays=frozenset(date.fromisoformat(x) for x in d.get("workdays", ())), source=src,
    )


def build_feedback_tags(ctx: Context, d: dict, src: s.Source) -> s.FeedbackTagsSpec:
    rules = tuple(s.FeedbackTagRule(r["tag"], tuple(r["keywords"]), r.get("score_at_most")) for r in d["tags"])
    return s.FeedbackTagsSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), rules=rules,
        opt_out_keywords=tuple(d.get("opt_out_keywords", ())),
        opt_out_channels=tuple(d.get("opt_out_channels", ("sms", "email", "wecom"))), source=src,
    )


def build_campaign(ctx: Context, d: dict, src: s.Source) -> s.CampaignSpec:
    return s.CampaignSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), description=d.get("description"),
        owner=d.get("owner"), channel=d.get("channel"), budget=money_of(d.get("budget")),
        start=date.fromisoformat(d["start"]), end=date.fromisoformat(d["end"]),
        attribution_window=duration_of(d.get("attribution_window")) or timedelta(days=7),
        rules=tuple(d.get("rules", ())), coupon_pools=tuple(d.get("coupon_pools", ())), forms=tuple(d.get("forms", ())),
        targets=tuple(s.TargetSpec(t["metric"], required_money(t["target"])) for t in d.get("targets", ())),
        costs=tuple(s.CostSpec(c["category"], required_money(c["amount"]), c.get("note")) for c in d.get("costs", ())),
        source=src,
    )

from engine.alerts.spec import build_alert  # noqa: E402

BUILDERS: Mapping[str, Callable[[Context, dict, s.Source], s.Spec]] = MappingProxyType({
    "form": build_form, "fieldset": build_fieldset, "role": build_role, "segment": build_segment,
    "coupon_pool": build_coupon_pool, "template": build_template, "connector": build_connector,
    "workflow": build_workflow, "rule": build_rule, "calendar": build_calendar,
    "feedback_tags": build_feedback_tags, "campaign": build_campaign,
    "points_policy": build_points_policy, "tier": build_tier,
    "alert": build_alert,  # issue 14: 数据预警 (engine/alerts/spec.py)
})
