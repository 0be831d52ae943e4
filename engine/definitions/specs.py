"""Immutable, typed specs: what the loader yields and everything downstream uses.

Specs are built only from definitions that passed every check, so they hold no
"maybe invalid" states: durations are ``timedelta``, conditions are parsed
trees, money is ``Decimal``. Nothing downstream touches raw dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping, Union

from engine.conditions.ast import Condition
from engine.conditions.kinds import FieldKind

if TYPE_CHECKING:  # defined with their own checks; engine/alerts/spec.py imports Source from here
    from engine.alerts.spec import AlertSpec

    from .loyalty import PointsPolicySpec, TierSpec

EMPTY: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True)
class Source:
    """Where a definition was read from, for messages and the designer."""

    file: str
    line: int


# ---------------------------------------------------------------- forms

#: How each form field type behaves in conditions (None: not conditionable).
FIELD_KIND_OF_TYPE: Mapping[str, FieldKind | None] = MappingProxyType({
    "text": FieldKind.TEXT, "textarea": FieldKind.TEXT, "phone": FieldKind.TEXT,
    "email": FieldKind.TEXT, "url": FieldKind.TEXT, "select": FieldKind.TEXT,
    "customer": FieldKind.NUMBER, "user": FieldKind.TEXT,
    "integer": FieldKind.NUMBER, "number": FieldKind.NUMBER, "money": FieldKind.NUMBER,
    "date": FieldKind.DATE, "datetime": FieldKind.DATETIME, "checkbox": FieldKind.BOOL,
    "multiselect": FieldKind.LIST, "file": None, "table": None,
})


@dataclass(frozen=True)
class OptionSpec:
    value: str | int
    label: str
    label_en: str | None = None


@dataclass(frozen=True)
class FieldSpec:
    """One form field. ``fields`` holds a sub-table's columns (type ``table``)."""

    key: str
    type: str
    label: str
    label_en: str | None = None
    required: bool = False
    default: object = None
    min: object = None
    max: object = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    pattern_message: str | None = None
    options: tuple[OptionSpec, ...] = ()
    unique: bool = False
    help: str | None = None
    help_en: str | None = None
    placeholder: str | None = None
    readonly: bool = False
    visible_if: Condition | None = None
    required_if: Condition | None = None
    after: str | None = None
    before: str | None = None
    phone_region: str = "any"
    accept: tuple[str, ...] = ()
    max_size_bytes: int | None = None
    fields: tuple["FieldSpec", ...] = ()
    min_rows: int | None = None
    max_rows: int | None = None
    #: How a page asks for the value: ``input`` (the type's own box) or
    #: ``scale`` (an integer from min to max as a row of buttons, e.g. NPS 0–10).
    display: str = "input"

    @property
    def kind(self) -> FieldKind | None:
        return FIELD_KIND_OF_TYPE[self.type]

    @property
    def option_values(self) -> tuple[str | int, ...]:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True)
class FormSpec:
    id: str
    title: str
    fields: tuple[FieldSpec, ...]
    title_en: str | None = None
    description: str | None = None
    submit_roles: tuple[str, ...] = ()
    view_roles: tuple[str, ...] = ()
    edit_by: str = "submitter"
    edit_until: str = "workflow_started"
    public: bool = False
    source: Source | None = None
    #: The field whose customer a record is about (a ``customer`` or ``phone`` field), or None.
    customer_field: str | None = None
    #: Steps run in the submission's transaction for that customer: ``TagSpec`` and ``EmitSpec``.
    on_submit: tuple[TagSpec | EmitSpec, ...] = ()
    #: ``redeems_coupon``: role (code, customer, phone, amount, store) → field key; submitting redeems.
    redeems_coupon: Mapping[str, str] | None = None
    #: ``campaign``: part (title, start, end, budget, …) → field key; an approved record becomes a campaign.
    campaign: Mapping[str, str] | None = None

    def field(self, key: str) -> FieldSpec:
        for f in self.fields:
            if f.key == key:
                return f
        raise KeyError(key)

    def field_kinds(self) -> Mapping[str, FieldKind]:
        """The conditionable fields, for the condition checker and compilers."""
        return MappingProxyType({f.key: f.kind for f in self.fields if f.kind is not None})


@dataclass(frozen=True)
class RoleSpec:
    id: str
    title: str
    title_en: str | None = None
    description: str | None = None
    source: Source | None = None
    #: What the role may do beyond its place in forms and flows (issue 16):
    #: ``unmask_personal_data`` shows full phones and e-mails (audited).
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True)
class SegmentSpec:
    id: str
    title: str
    condition: Condition
    title_en: str | None = None
    description: str | None = None
    source: Source | None = None


@dataclass(frozen=True)
class CouponPoolSpec:
    id: str
    title: str
    value: Decimal
    title_en: str | None = None
    min_order: Decimal | None = None
    currency: str = "CNY"
    expires_in: timedelta | None = None
    budget: Decimal | None = None
    max_issued: int | None = None
    code_prefix: str | None = None
    cost_per_coupon: Decimal | None = None
    source: Source | None = None
    #: Redemption rules (核销, anti-abuse): see :class:`RedemptionRules`.
    redemption: RedemptionRules = field(default_factory=lambda: RedemptionRules())


@dataclass(frozen=True)
class RedemptionRules:
    """What a till may redeem of a pool. ``valid_from``/``valid_until`` are naive
    local times in the business time zone (``valid_until`` exclusive: a date
    ``until`` becomes the next midnight); limits are None when not declared."""

    valid_from: datetime | None = None
    valid_until: datetime | None = None
    per_customer: int | None = None
    per_phone: int | None = None
    per_store_per_hour: int | None = None
    per_device_per_hour: int | None = None
    new_customers_only: bool = False
    stackable: bool = True
    blacklist_phones: frozenset[str] = frozenset()
    blacklist_devices: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SmsTemplateSpec:
    sign_name: str | None = None
    aliyun_template_code: str | None = None
    tencent_template_id: str | None = None
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class WecomTemplateSpec:
    msgtype: str = "text"
    title: str | None = None
    url: str | None = None
    btntxt: str | None = None


@dataclass(frozen=True)
class TemplateSpec:
    id: str
    channels: tuple[str, ...]
    body: str
    title: str | None = None
    delivery_class: str = "marketing"
    locale: str = "zh"
    subject: str | None = None
    html: str | None = None
    sms: SmsTemplateSpec | None = None
    wecom: WecomTemplateSpec | None = None
    source: Source | None = None


@dataclass(frozen=True)
class ConnectorSpec:
    """A configured channel. ``secrets`` maps a secret's name to the environment
    variable that holds it: the value itself is never stored or printed."""

    id: str
    type: str
    channel: str
    title: str | None = None
    default: bool = False
    enabled: bool = True
    settings: Mapping[str, object] = field(default_factory=lambda: EMPTY)
    secrets: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    per_second: float | None = None
    per_minute: float | None = None
    per_recipient_per_minute: float | None = None
    send_window: tuple[time, time] | None = None
    max_attempts: int = 8
    source: Source | None = None
    #: Prices for campaign costs (issue 14): per SMS segment and recipient,
    #: per thousand e-mails, or per message; None when not declared (costs 0).
    price_per_segment: Decimal | None = None
    price_per_thousand: Decimal | None = None
    price_per_message: Decimal | None = None


# ------------------------------------------------------- shared actions

@dataclass(frozen=True)
class Recipient:
    """Who a message goes to: ``kind`` is submitter, customer, account_manager,
    manager, role, users or field; ``value`` the role id, user names or field key."""

    kind: str
    value: object = None


@dataclass(frozen=True)
class SendSpec:
    channel: str
    template: str
    to: Recipient | None = None
    connector: str | None = None
    on: str = "any_day"


@dataclass(frozen=True)
class Assignees:
    """Whom a task goes to: exactly one of role, users, field, manager."""

    role: str | None = None
    users: tuple[str, ...] = ()
    field: str | None = None
    manager: bool = False


@dataclass(frozen=True)
class SetFieldSpec:
    values: Mapping[str, object]


# ------------------------------------------------------------- workflow

@dataclass(frozen=True)
class ApprovalSpec:
    assignees: Assignees
    mode: str = "any"
    threshold: int | None = None
    allow: tuple[str, ...] = ("return", "transfer", "add_approver")
    reject_to: str | None = None
    #: may a transfer / add-approver hand this step's task to the submitter or
    #: to someone who already decided? None: as the workflow says
    allow_self_approval: bool | None = None


@dataclass(frozen=True)
class OverdueSpec:
    remind: bool = True
    escalate_to: Assignees | None = None
    auto: str | None = None


@dataclass(frozen=True)
class BranchCase:
    when: Condition
    steps: tuple["WorkflowStep", ...]


@dataclass(frozen=True)
class BranchSpec:
    cases: tuple[BranchCase, ...]
    default: tuple["WorkflowStep", ...]


@dataclass(frozen=True)
class ParallelBranch:
    id: str
    steps: tuple["WorkflowStep", ...]


@dataclass(frozen=True)
class ParallelSpec:
    branches: tuple[ParallelBranch, ...]


WorkflowAction = Union[ApprovalSpec, SendSpec, SetFieldSpec, Assignees, BranchSpec, ParallelSpec]


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a flow; ``action`` is an ApprovalSpec, SendSpec, SetFieldSpec,
    Assignees (a cc), BranchSpec or ParallelSpec."""

    id: str
    action: WorkflowAction
    title: str | None = None
    title_en: str | None = None
    when: Condition | None = None
    due: timedelta | None = None
    remind_every: timedelta | None = None
    on_overdue: OverdueSpec | None = None

    @property
    def type(self) -> str:
        if isinstance(self.action, Assignees):
            return "cc"
        return {
            ApprovalSpec: "approval", SendSpec: "send", SetFieldSpec: "set_field",
            BranchSpec: "branch", ParallelSpec: "parallel",
        }[type(self.action)]


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    title: str
    form: str
    steps: tuple[WorkflowStep, ...]
    title_en: str | None = None
    description: str | None = None
    on_approve: tuple[WorkflowAction, ...] = ()
    on_reject: tuple[WorkflowAction, ...] = ()
    source: Source | None = None
    #: separation of duties is off for this workflow (see engine.approvals.duties)
    allow_self_approval: bool = False


# ---------------------------------------------------------------- rules

@dataclass(frozen=True)
class ScheduleTrigger:
    cron: str
    timezone: str


@dataclass(frozen=True)
class EventTrigger:
    event: str
    form: str | None = None
    workflow: str | None = None
    when: Condition | None = None


@dataclass(frozen=True)
class DateFieldTrigger:
    """Fires ``offset`` before a date of each subject (negative: after it;
    ``yearly``: every year on the anniversary), at local time ``at`` in ``timezone``."""

    field: str
    offset: timedelta
    yearly: bool = False
    at: time = time(10, 0)
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True)
class SegmentChangeTrigger:
    to: str
    from_: str | None = None


Trigger = Union[ScheduleTrigger, EventTrigger, DateFieldTrigger, SegmentChangeTrigger]


@dataclass(frozen=True)
class IssueCouponSpec:
    pool: str
    value: Decimal | None = None
    expires_in: timedelta | None = None


@dataclass(frozen=True)
class TagSpec:
    tag: str
    remove: bool = False


@dataclass(frozen=True)
class EmitSpec:
    """A form's ``on_submit: [{emit: custom.NAME}]``: append that event about the record's customer."""

    event: str


@dataclass(frozen=True)
class WaitSpec:
    duration: timedelta | None = None
    until: time | None = None
    on: str = "any_day"


@dataclass(frozen=True)
class IfSpec:
    condition: Condition
    then: tuple["JourneyStep", ...] = ()
    else_: tuple["JourneyStep", ...] = ()


@dataclass(frozen=True)
class WebhookSpec:
    connector: str
    payload: Mapping[str, object] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class CreateRecordSpec:
    form: str
    data: Mapping[str, object] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True)
class TaskOutcomeSpec:
    """How a follow-up task can end (``contacted``, ``resolved`` …), with its zh/en labels."""

    id: str
    label: str
    label_en: str | None = None


#: Outcomes of a follow-up task whose step lists none; a step may list these by id alone.
DEFAULT_TASK_OUTCOMES: tuple[TaskOutcomeSpec, ...] = (
    TaskOutcomeSpec("contacted", "已联系", "Contacted"),
    TaskOutcomeSpec("resolved", "已解决", "Resolved"),
    TaskOutcomeSpec("no_answer", "未接通", "No answer"),
    TaskOutcomeSpec("declined", "客户拒绝", "Declined"),
)


@dataclass(frozen=True)
class CreateTaskSpec:
    """A follow-up task for staff (engine/rule_tasks.py): due, reminders and
    escalation as an approval step's; ``outcomes`` empty: the default ones."""

    title: str
    to: Recipient
    due: timedelta | None = None
    form: str | None = None
    title_en: str | None = None
    remind_every: timedelta | None = None
    on_overdue: OverdueSpec | None = None
    outcomes: tuple[TaskOutcomeSpec, ...] = ()


JourneyAction = Union[
    SendSpec, IssueCouponSpec, TagSpec, SetFieldSpec, WaitSpec, IfSpec, WebhookSpec,
    CreateRecordSpec, CreateTaskSpec,
]


@dataclass(frozen=True)
class JourneyStep:
    """A journey step. ``id`` is the author's, or derived from its position
    (``s3``, ``s4_else_1``) so that migrating to a new version can match steps."""

    id: str
    action: JourneyAction | Any  # a plug-in step's spec is its own type (engine/steps/registry.py)


@dataclass(frozen=True)
class VariantSpec:
    """One arm of a rule's experiment: its share (``weight``, relative to the
    other variants) and what it changes: templates and coupon pools swapped by
    id (``templates: {winback_sms: winback_sms_b}``), a coupon value."""

    key: str
    weight: int = 1
    title: str | None = None
    title_en: str | None = None
    templates: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    pools: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    coupon_value: Decimal | None = None


@dataclass(frozen=True)
class ExperimentSpec:
    """A rule's A/B test (engine/experiments.py): ``holdout`` percent of the
    audience is the control group (enters, is counted, gets no message or
    coupon of the rule); the rest is split over ``variants`` by weight.
    ``salt`` reshuffles the assignment (change it for a new test)."""

    holdout: int = 0
    salt: str = ""
    variants: tuple[VariantSpec, ...] = ()


@dataclass(frozen=True)
class RuleSpec:
    id: str
    title: str
    trigger: Trigger
    steps: tuple[JourneyStep, ...]
    title_en: str | None = None
    description: str | None = None
    enabled: bool = True
    campaign: str | None = None
    audience: Condition | None = None
    audience_limit: int | None = None
    audience_form: str | None = None            # the audience is records of this form (not customers) ...
    record_audience: Condition | None = None    # ... those whose data matches this condition
    once_per: timedelta | None = None
    once_ever: bool = False
    quiet_hours: tuple[time, time] | None = None
    timezone: str = "Asia/Shanghai"
    delivery_class: str = "marketing"
    catch_up: str = "fire_late"
    exit_when: Condition | None = None
    source: Source | None = None
    experiment: ExperimentSpec | None = None


@dataclass(frozen=True)
class CalendarSpec:
    """A business calendar: a day is a workday when it is a listed make-up
    workday (调休), or neither a weekend day (``weekend``: ``date.weekday()``
    numbers) nor a holiday."""

    id: str
    title: str
    timezone: str = "Asia/Shanghai"
    weekend: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    title_en: str | None = None
    source: Source | None = None


@dataclass(frozen=True)
class FieldsetSpec:
    id: str
    fields: tuple[FieldSpec, ...]
    title: str | None = None
    source: Source | None = None


@dataclass(frozen=True)
class FeedbackTagRule:
    """Tag feedback ``tag`` when its text contains one of ``keywords`` (case
    folded); with ``score_at_most``, only answers scoring that or less."""

    tag: str
    keywords: tuple[str, ...]
    score_at_most: int | None = None


@dataclass(frozen=True)
class FeedbackTagsSpec:
    """Keyword rules for feedback (物流慢, 客服态度 …) and the replies that opt a
    customer out (``TD``, ``退订`` …) of ``opt_out_channels``."""

    id: str
    title: str
    rules: tuple[FeedbackTagRule, ...]
    opt_out_keywords: tuple[str, ...] = ()
    opt_out_channels: tuple[str, ...] = ("sms", "email", "wecom")
    title_en: str | None = None
    source: Source | None = None


@dataclass(frozen=True)
class TargetSpec:
    """A campaign target: ``metric`` is a field of ``CampaignKpis``."""

    metric: str
    target: Decimal


@dataclass(frozen=True)
class CostSpec:
    """A cost a campaign definition declares up front."""

    category: str
    amount: Decimal
    note: str | None = None


@dataclass(frozen=True)
class CampaignSpec:
    """A campaign defined in YAML (issue 14): dates are local calendar days in
    the business time zone, ``end`` inclusive."""

    id: str
    title: str
    start: date
    end: date
    title_en: str | None = None
    description: str | None = None
    owner: str | None = None
    channel: str | None = None
    budget: Decimal | None = None
    attribution_window: timedelta = timedelta(days=7)
    rules: tuple[str, ...] = ()
    coupon_pools: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()
    targets: tuple[TargetSpec, ...] = ()
    costs: tuple[CostSpec, ...] = ()
    source: Source | None = None


Spec = Union[
    FormSpec, FieldsetSpec, RoleSpec, SegmentSpec, CouponPoolSpec, TemplateSpec,
    ConnectorSpec, WorkflowSpec, RuleSpec, CalendarSpec, FeedbackTagsSpec, CampaignSpec,
    "PointsPolicySpec", "TierSpec", "AlertSpec",
]
