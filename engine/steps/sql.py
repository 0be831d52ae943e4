"""What steps give the SQL path of a scheduled rule: the planner they add their SQL form to.

:func:`engine.automation.setentry.plan_segment` walks a rule's first segment
(up to the first ``wait`` or the end) and asks each step for its SQL form
(:meth:`engine.steps.registry.StepType.sql_form`). A step either adds itself
to the :class:`SqlPlanner` (a coupon statement, a send statement, a tag, the
segment's end) or answers :class:`NoSql` with the reason, which the run
report then carries: the rule enters the usual way and the per-journey
runtime takes its steps.

With an experiment, message and coupon statements are planned once per arm
that gets messages (the variant's template or pool swapped in); the control
group gets none and tags apply to everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.experiments import Arm, arm_spec, bounds
from engine.storage.automation_repo import customer_columns
from engine.storage.entry_sql import TEXT_COLUMNS, SetCoupon, SetSend

if TYPE_CHECKING:
    from engine.automation.policy import Policy
    from engine.definitions.loader import DefinitionSet
    from engine.definitions.specs import RuleSpec

__all__ = ["CUSTOMER_COLUMNS", "TEXT_COLUMNS", "NoSql", "PlannedCoupon", "SqlEnd", "SqlPlanner"]

#: Customer columns a template parameter may name (others are not customer fields).
CUSTOMER_COLUMNS = frozenset(customer_columns())


@dataclass(frozen=True)
class NoSql:
    """Why a step (or a rule) does not take the SQL path."""

    reason: str


@dataclass(frozen=True)
class SqlEnd:
    """Where the SQL segment stops: the journey's state after it."""

    pc: int
    step_id: str | None
    status: str
    due: datetime | None                # naive UTC
    state: dict[str, Any] | None


@dataclass(frozen=True)
class PlannedCoupon:
    """A coupon step in the SQL segment: its statement and what templates see of it."""

    statement: SetCoupon
    context: Mapping[str, Any]          # ``coupon`` in templates, without the code

    @property
    def pool_id(self) -> str:
        return self.statement.pool_id


@dataclass
class SqlPlanner:
    """The SQL segment being planned (see the module notes)."""

    rule: RuleSpec
    defs: DefinitionSet
    policy: Policy
    now: datetime
    key: str                             # the run's period key
    listened: set[str]
    coupons: dict[str | None, list[PlannedCoupon]] = field(default_factory=dict)
    sends: dict[str | None, list[SetSend]] = field(default_factory=dict)
    tags: dict[str, bool] = field(default_factory=dict)
    caps: list[tuple[str, str, int, datetime]] = field(default_factory=list)
    _prior: dict[tuple[str, str], int] = field(default_factory=dict)

    def message_arms(self) -> list[Arm | None]:
        """The arms that get the rule's messages and coupons ([None]: no experiment)."""
        exp = self.rule.experiment
        if exp is None:
            return [None]
        found = [arm_spec(self.rule, key) for _, key in bounds(exp)]
        return [a for a in found if a is not None and not a.control]

    def add_coupon(self, arm: Arm | None, coupon: PlannedCoupon) -> None:
        self.coupons.setdefault(arm.key if arm else None, []).append(coupon)

    def coupon_in_scope(self, arm: Arm | None) -> PlannedCoupon | None:
        """The last coupon issued before this point of the segment, in ``arm``."""
        found = self.coupons.get(arm.key if arm else None)
        return found[-1] if found else None

    def add_send(self, arm: Arm | None, send: SetSend) -> None:
        self.sends.setdefault(arm.key if arm else None, []).append(send)

    def count_send(self, arm: Arm | None, dclass: str, channel: str) -> None:
        """Note a send's frequency caps: a customer is plain only while every
        cap has room for the segment's sends (counted once, not per arm)."""
        first = self.message_arms()[0]
        if (arm.key if arm else None) != (first.key if first else None):
            return
        from engine.storage.times import to_db_time

        caps = [c for c in self.policy.caps if c.delivery_class == dclass]
        before = self._prior.get((dclass, channel), 0)
        for cap in caps:
            self.caps.append((channel, dclass, cap.limit - before, to_db_time(self.now - cap.per)))
        if caps:
            self._prior[(dclass, channel)] = before + 1

    def tag(self, tag: str, *, add: bool) -> None:
        self.tags.pop(tag, None)
        self.tags[tag] = add
