"""A/B tests of a rule: which arm a customer is in, the same in Python and in SQL.

A rule's ``experiment:`` holds back ``holdout`` percent of its audience as the
control group and splits the rest over weighted variants. A subject's arm
comes from a hash of (rule id, subject id, salt):

* ``seed`` = the first 4 bytes of SHA-256 of ``"{rule id}\\x1f{salt}"``, mod
  2³¹−1 (a constant per rule, computed in Python, bound into the SQL);
* ``x`` = (subject id mod 2³¹−1 + seed) mod 2³¹−1, then twice
  ``x = (x · A) mod 2³¹−1; x = x xor (x >> S)`` with fixed A and S;
* ``bucket`` = x mod 10,000 (basis points); the arms own consecutive ranges
  of buckets (control first, then the variants in order, by weight).

Only integer ``+ * % >> & |`` on non-negative numbers below 2⁶² appear, so
SQLite and PostgreSQL (64-bit integers, no overflow) compute exactly what
Python does (xor is written ``(a | b) - (a & b)``, which both databases have).
Nothing depends on the rule's version, the run or the time: a customer stays
in their arm until the salt (or the rule id) changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.definitions.specs import ExperimentSpec, RuleSpec

__all__ = ["BUCKETS", "CONTROL", "MODULUS", "ROUNDS", "TREATMENT", "Arm", "Assignment", "arm_of", "arm_spec", "assignment", "bucket", "bounds",
           "seed"]

MODULUS = 2_147_483_647          # 2^31 - 1, prime
ROUNDS = ((1_103_515_245 % MODULUS, 15), (48_271 * 69_621 % MODULUS, 13))   # (multiplier, shift)
BUCKETS = 10_000
CONTROL = "control"
#: The arm of everyone not held out when the experiment lists no variants.
TREATMENT = "treatment"


def seed(rule_id: str, salt: str) -> int:
    """The per-rule constant of the hash (stable across runs, versions and machines)."""
    digest = hashlib.sha256(f"{rule_id}\x1f{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % MODULUS


def bucket(seed_: int, subject_id: int) -> int:
    """The subject's bucket, 0 … 9,999 (see the module notes; SQL: engine/storage/experiment_sql.py)."""
    x = (subject_id % MODULUS + seed_) % MODULUS
    for mult, shift in ROUNDS:
        x = (x * mult) % MODULUS
        x = (x | (x >> shift)) - (x & (x >> shift))
    return x % BUCKETS


@dataclass(frozen=True)
class Arm:
    """An arm as the runtime needs it: ``key`` (what ``journeys.arm`` holds),
    whether it is the control group, and the variant's substitutions."""

    key: str
    control: bool = False
    templates: dict[str, str] | None = None
    pools: dict[str, str] | None = None
    coupon_value: Decimal | None = None
    title: str | None = None
    title_en: str | None = None

    def template(self, template_id: str) -> str:
        return (self.templates or {}).get(template_id, template_id)

    def pool(self, pool_id: str) -> str:
        return (self.pools or {}).get(pool_id, pool_id)


def bounds(exp: ExperimentSpec) -> list[tuple[int, str]]:
    """(upper bucket, exclusive; arm key) in order; the last upper bound is 10,000.

    Control owns ``holdout`` % of the buckets; the variants share the rest in
    proportion to their weights (integer arithmetic, the remainder to the last)."""
    out: list[tuple[int, str]] = []
    held = exp.holdout * BUCKETS // 100
    if held:
        out.append((held, CONTROL))
    variants = exp.variants
    if not variants:
        return out + [(BUCKETS, TREATMENT)]
    rest, total = BUCKETS - held, sum(v.weight for v in variants)
    acc, upper = 0, held
    for v in variants[:-1]:
        acc += v.weight
        upper = held + rest * acc // total
        out.append((upper, v.key))
    out.append((BUCKETS, variants[-1].key))
    return out


def arm_of(rule: RuleSpec, subject_id: int) -> str | None:
    """The arm key of a subject in ``rule`` (None: the rule has no experiment)."""
    exp = rule.experiment
    if exp is None:
        return None
    b = bucket(seed(rule.id, exp.salt), subject_id)
    for upper, key in bounds(exp):
        if b < upper:
            return key
    raise AssertionError("bounds end at BUCKETS")


def arm_spec(rule: RuleSpec, key: str | None) -> Arm | None:
    """The :class:`Arm` of a stored arm key (None: no experiment, or an arm the
    rule's version no longer has: the journey then runs the rule as written)."""
    exp = rule.experiment
    if exp is None or key is None:
        return None
    if key == CONTROL:
        return Arm(CONTROL, control=True, title="对照组", title_en="Control group")
    for v in exp.variants:
        if v.key == key:
            return Arm(v.key, templates=dict(v.templates), pools=dict(v.pools), coupon_value=v.coupon_value,
                       title=v.title, title_en=v.title_en)
    return Arm(key, title="实验组", title_en="Treatment group") if key == TREATMENT else None


@dataclass(frozen=True)
class Assignment:
    """What SQL needs to assign arms for one rule: the seed and the bucket bounds."""

    seed: int
    bounds: tuple[tuple[int, str], ...]


def assignment(rule: RuleSpec) -> Assignment | None:
    """The rule's :class:`Assignment` (None: no experiment)."""
    exp = rule.experiment
    if exp is None:
        return None
    return Assignment(seed(rule.id, exp.salt), tuple(bounds(exp)))
