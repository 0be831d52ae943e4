"""A/B tests of a rule: which arm a customer is in, the same in Python and in SQL.

A rule's ``experiment:`` holds back ``holdout`` percent of its audience as the
control group and splits the rest over weighted variants. A subject's arm
comes from a universal hash (Carter and Wegman) of its id, keyed by the rule:

* ``(a, b)`` = two numbers from SHA-256 of ``"{rule id}\x1f{salt}"``, with
  1 ≤ a < p and 0 ≤ b < p for the prime p = 2³¹−1 (constants per rule,
  computed in Python and bound into the SQL);
* ``bucket`` = ((a · (id mod p) + b) mod p) mod 10,000 (basis points); the
  arms own consecutive ranges of buckets (control first, then the variants in
  order, by weight).

Only integer ``+ * %`` on non-negative numbers below 2⁶² appear, so SQLite
and PostgreSQL (64-bit integers) compute exactly what Python does, and the
expression names the id once (cheap in an ``INSERT … SELECT`` over a million
customers). A new salt draws new keys: a new, independent split. Nothing
depends on the rule's version, the run or the time: a customer stays in
their arm until the salt (or the rule id) changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.definitions.specs import ExperimentSpec, RuleSpec

__all__ = [
    "BUCKETS",
    "CONTROL",
    "MODULUS",
    "TREATMENT",
    "Arm",
    "Assignment",
    "arm_of",
    "arm_spec",
    "assignment",
    "bounds",
    "bucket",
    "hash_keys",
]

MODULUS = 2_147_483_647          # 2^31 - 1, prime
BUCKETS = 10_000
CONTROL = "control"
#: The arm of everyone not held out when the experiment lists no variants.
TREATMENT = "treatment"


def hash_keys(rule_id: str, salt: str) -> tuple[int, int]:
    """The rule's keys (a, b) of the hash (stable across runs, versions and machines)."""
    digest = hashlib.sha256(f"{rule_id}\x1f{salt}".encode()).digest()
    return 1 + int.from_bytes(digest[:4], "big") % (MODULUS - 1), int.from_bytes(digest[4:8], "big") % MODULUS


def bucket(keys: tuple[int, int], subject_id: int) -> int:
    """The subject's bucket, 0 … 9,999 (see the module notes; SQL: engine/storage/experiment_sql.py)."""
    a, b = keys
    return ((a * (subject_id % MODULUS) + b) % MODULUS) % BUCKETS


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
    b = bucket(hash_keys(rule.id, exp.salt), subject_id)
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
    """What SQL needs to assign arms for one rule: the hash keys and the bucket bounds."""

    keys: tuple[int, int]
    bounds: tuple[tuple[int, str], ...]


def assignment(rule: RuleSpec) -> Assignment | None:
    """The rule's :class:`Assignment` (None: no experiment)."""
    exp = rule.experiment
    if exp is None:
        return None
    return Assignment(hash_keys(rule.id, exp.salt), tuple(bounds(exp)))
