"""``add_points``: give the journey's customer loyalty points (积分), e.g. a
birthday or sign-in reward::

    - add_points: {points: 100, reason: 生日积分, expires_in: 90d}

The points are a lot on the ledger (:mod:`engine.storage.points_repo`, its
one writer), written for the whole batch in one INSERT plus one UPDATE of
the customers' balances (the step's :class:`WriteKind`). ``expires_in``
defaults to the published points policy's validity; without a policy the
points do not lapse. The idempotency key is the journey and the step, so a
repeated batch adds nothing. The experiment's control group gets no points
(a reward, like a coupon). No SQL form: a scheduled rule with this step
runs the batch path, and its run says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from engine.definitions.errors import Problem
from engine.durations import parse_duration
from engine.loyalty.points import MAX_POINTS, local_day
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import WriteKind, Writes
from engine.storage import points_repo

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["POINTS", "STEP", "AddPointsSpec", "AddPointsStep"]


@dataclass(frozen=True)
class AddPointsSpec:
    points: int
    reason: str | None = None
    expires_in: timedelta | None = None


@dataclass(frozen=True)
class PointsRow:
    customer_id: int
    points: int
    reason: str | None
    key: str
    expires_days: int | None
    tz: str


def write_points(session: Session, rows: list[PointsRow], batch: Batch) -> None:
    """The batch's points: one INSERT of lots (a key already stored is skipped), one UPDATE of balances."""
    lots = [{"customer_id": r.customer_id, "kind": "earn", "amount": r.points,
             "expires_on": local_day(batch.now, r.tz) + timedelta(days=r.expires_days) if r.expires_days else None,
             "reason": r.reason, "source": "rule", "source_ref": None, "idempotency_key": r.key,
             "created_at": batch.db_now} for r in rows]
    written = set(points_repo.add_lots(session, lots))
    points_repo.refresh_customers(session, {r.customer_id for r in rows if r.key in written}, batch.db_now)


POINTS = WriteKind("points_ledger", write_points)


class AddPointsStep(StepType):
    key = "add_points"
    spec_type = AddPointsSpec
    label = {"zh": "加积分", "en": "Add points"}
    help = {"zh": "给客户加积分（默认按积分规则的有效期到期）。对照组不加。",
            "en": "Give the customer points (lapsing after the points policy's validity by default); "
                  "not the control group."}
    schema = {
        "type": "object", "required": ["points"], "additionalProperties": False,
        "properties": {
            "points": {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
            "reason": {"type": "string", "minLength": 1, "maxLength": 255},
            "expires_in": {"$ref": "common.schema.json#/$defs/duration"},
        },
    }

    def build(self, body: Any, site: BuildSite) -> AddPointsSpec:
        expires = body.get("expires_in")
        return AddPointsSpec(body["points"], body.get("reason"), parse_duration(expires) if expires else None)

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        expires = body.get("expires_in")
        if isinstance(expires, str):
            try:
                short = parse_duration(expires) < timedelta(days=1)
            except ValueError:
                return []  # the schema reports it
            if short:
                return [Problem(site.path + ("expires_in",), "expires_in",
                                "points lapse at the start of a local day: give at least 1d")]
        return []

    def summary(self, spec: AddPointsSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.points}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: AddPointsSpec = instr.action
        if spec.expires_in is not None:
            days: int | None = spec.expires_in.days
        else:
            policy = batch.defs.points_policy
            days = policy.validity_days if policy is not None else None
        for c in cursors:
            c.go(instr.next)
            if c.customer_id is None or c.held_out:
                continue
            key = f"rule:{c.rule.id}:j{c.journey.id}:{instr.step_id}"
            out.add(POINTS, PointsRow(c.customer_id, spec.points, spec.reason or c.rule.title, key, days,
                                      c.rule.timezone))
            c.row["points"] = int(c.row.get("points") or 0) + spec.points  # a later `if` sees them
        return out


STEP = AddPointsStep()
