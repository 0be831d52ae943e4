"""``issue_coupon``: a coupon from a pool, with a random code, for the journey's customer.

A pool with ``max_issued`` or ``budget`` stops issuing at its limit (the
journey goes on; counted as skipped). A journey in the rule's control group
gets no coupon; a variant may swap the pool or the value. The SQL form issues
the coupons of a whole entry in one ``INSERT … SELECT`` (codes drawn in the
database) for pools without limits.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.automation.timing import zone
from engine.definitions.build import duration_of, money_of
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import CouponPoolSpec, IssueCouponSpec, RuleSpec
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import CouponRow, StepFailed, Writes, display
from engine.storage import automation_repo as repo
from engine.storage import entry_sql
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor
    from engine.steps.sql import SqlPlanner

__all__ = ["CODE_ALPHABET", "STEP", "IssueCouponStep", "coupon_context", "random_code"]

#: 32 symbols, no 0/O, 1/I; the SQL form draws from the same alphabet (engine/storage/entry_sql.py).
CODE_ALPHABET = entry_sql.CODE_ALPHABET


def random_code(length: int = 10) -> str:
    """``length`` symbols of :data:`CODE_ALPHABET` from the OS's CSPRNG (5 bits each)."""
    bits = int.from_bytes(secrets.token_bytes((5 * length + 7) // 8), "big")
    return "".join(CODE_ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def coupon_context(pool: CouponPoolSpec | None, pool_id: str, value: Any, expires: datetime | None,
                   rule: RuleSpec) -> dict[str, Any]:
    """What templates see as ``coupon`` (without ``code``): value, pool, minimum
    order, expiry date in the rule's zone. ``expires``: aware, or None."""
    return {
        "value": display(value), "pool": pool_id,
        "min_order": display(pool.min_order) if pool and pool.min_order is not None else "",
        "expires_at": expires.astimezone(zone(rule.timezone)).date().isoformat() if expires else "",
    }


class IssueCouponStep(StepType):
    key = "issue_coupon"
    spec_type = IssueCouponSpec
    label = {"zh": "发券", "en": "Issue a coupon"}
    help = {"zh": "从券池给客户发一张券（随机券码），可改面值和有效期；券池额度用完则跳过。",
            "en": "Give the customer a coupon from a pool (random code), optionally with its own value and "
                  "expiry; skipped once the pool's limit is reached."}
    emits = "coupon.issued"
    schema = {
        "type": "object",
        "required": ["pool"],
        "additionalProperties": False,
        "properties": {
            "pool": {"$ref": "common.schema.json#/$defs/ref"},
            "value": {"type": "number", "exclusiveMinimum": 0},
            "expires_in": {"$ref": "common.schema.json#/$defs/duration"},
        },
    }

    def build(self, body: Any, site: BuildSite) -> IssueCouponSpec:
        return IssueCouponSpec(body["pool"], money_of(body.get("value")), duration_of(body.get("expires_in")))

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        pools = site.ctx.ids("coupon_pool")
        if body["pool"] not in pools:
            return [Problem(site.path + ("pool",), "unknown_ref", unknown("coupon pool", body["pool"], pools))]
        return []

    def summary(self, spec: IssueCouponSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.pool}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: IssueCouponSpec = instr.action
        for c in cursors:
            c.go(instr.next)
            if c.held_out:
                continue
            try:
                self._one(batch, out, spec, c)
            except StepFailed as exc:
                c.fail(str(exc))
        return out

    def _one(self, batch: Batch, out: Writes, spec: IssueCouponSpec, c: Cursor) -> None:
        pool_id = c.arm.pool(spec.pool) if c.arm is not None else spec.pool
        pool = batch.defs.coupon_pools.get(pool_id)
        if pool is None:
            raise StepFailed(f"unknown coupon pool `{pool_id}`")
        value = spec.value if spec.value is not None else pool.value
        if c.arm is not None and c.arm.coupon_value is not None:
            value = c.arm.coupon_value
        if pool.max_issued is not None or pool.budget is not None:
            if pool_id not in batch.pool_counts:
                batch.pool_counts[pool_id] = list(repo.pool_issued(batch.session, pool_id))
            count, total = batch.pool_counts[pool_id]
            if (pool.max_issued is not None and count >= pool.max_issued) or \
                    (pool.budget is not None and Decimal(total) + value > pool.budget):
                c.counters.skipped_other += 1
                return
            batch.pool_counts[pool_id] = [count + 1, Decimal(total) + value]
        expires_in = spec.expires_in or pool.expires_in
        code = (pool.code_prefix or pool.id.upper()[:8]) + random_code()
        j = c.journey
        expires_at = to_db_time(batch.now + expires_in) if expires_in else None
        row = CouponRow(pool.id, code, c.customer_id, value, expires_at, j.id)
        out.coupons.append(row)
        batch.coupons.setdefault(j.id, []).append({
            "pool_id": pool.id, "code": code, "customer_id": c.customer_id, "value": value,
            "issued_at": batch.db_now, "expires_at": expires_at, "redeemed_at": None, "journey_id": j.id,
            "status": "issued"})
        batch.event(out, "coupon.issued", c, {"pool": pool.id, "code": code})

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        from engine.steps.sql import NoSql, PlannedCoupon
        from engine.storage.entry_sql import SetCoupon

        spec: IssueCouponSpec = instr.action
        if "coupon.issued" in planner.listened:
            return NoSql("a rule listens to `coupon.issued`")
        for arm in planner.message_arms():
            pool_id = arm.pool(spec.pool) if arm is not None else spec.pool
            pool = planner.defs.coupon_pools.get(pool_id)
            if pool is None:
                return NoSql(f"unknown coupon pool `{pool_id}`")
            if pool.max_issued is not None or pool.budget is not None:
                return NoSql(f"coupon pool `{pool_id}` has a limit (counted per coupon)")
            if any(c.pool_id == pool_id for c in planner.coupons.get(arm.key if arm else None, ())):
                return NoSql(f"two coupons from pool `{pool_id}` in one segment")
            value = spec.value if spec.value is not None else pool.value
            if arm is not None and arm.coupon_value is not None:
                value = arm.coupon_value
            expires_in = spec.expires_in or pool.expires_in
            expires = to_db_time(planner.now + expires_in) if expires_in else None
            context = coupon_context(pool, pool.id, value, from_db_time(expires) if expires else None, planner.rule)
            planner.add_coupon(arm, PlannedCoupon(
                SetCoupon(pool.id, pool.code_prefix or pool.id.upper()[:8], value, expires), context))
        return None


STEP = IssueCouponStep()
