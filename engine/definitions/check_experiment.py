"""Static checks of a rule's ``experiment:`` (holdout and variants).

The schema already bounds ``holdout`` (0–99) and ``weight`` (≥ 1); here:
variant keys are unique and not the reserved ``control``/``treatment``, an
experiment splits someone (a holdout or a variant), and every template or
coupon pool a variant swaps exists and is used by the rule (a swap of
something the rule never sends is a typo). Problems carry paths, so the
loader reports ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from engine.experiments import CONTROL, TREATMENT

from .context import Context, Problems
from .errors import Problem, unknown


def _used(steps: Sequence[Any], key: str, field: str) -> Iterator[str]:
    """The values of ``field`` of every ``key`` step of the rule, nested ones included."""
    for step in steps:
        if isinstance(step.get(key), dict) and field in step[key]:
            yield step[key][field]
        for nested in ("then", "else"):
            yield from _used(step.get(nested, ()) or (), key, field)


def check_experiment(ctx: Context, exp: dict[str, Any], steps: list) -> Problems:
    problems: Problems = []
    variants = exp.get("variants", ())
    if not exp.get("holdout") and len(variants) < 2:
        problems.append(Problem(("experiment",), "experiment",
                                "an experiment needs a holdout (e.g. `holdout: 10`) or at least two variants",
                                at_key=True))
    sent = set(_used(steps, "send", "template"))
    issued = set(_used(steps, "issue_coupon", "pool"))
    seen: set[str] = set()
    for n, v in enumerate(variants):
        p = ("experiment", "variants", n)
        if v["key"] in (CONTROL, TREATMENT):
            problems.append(Problem(p + ("key",), "experiment", f"`{v['key']}` is reserved; name the variant otherwise"))
        elif v["key"] in seen:
            problems.append(Problem(p + ("key",), "experiment", f"variant `{v['key']}` is listed twice"))
        seen.add(v["key"])
        for field, kind, what, used in (("templates", "template", "template", sent),
                                        ("pools", "coupon_pool", "coupon pool", issued)):
            for old, new in (v.get(field) or {}).items():
                if old not in used:
                    problems.append(Problem(p + (field, old), "unknown_ref",
                                            unknown(f"{what} of this rule", old, used), at_key=True))
                if new not in ctx.ids(kind):
                    problems.append(Problem(p + (field, old), "unknown_ref", unknown(what, new, ctx.ids(kind))))
        if "coupon_value" in v and not issued:
            problems.append(Problem(p + ("coupon_value",), "experiment",
                                    "`coupon_value` changes coupons, but this rule issues none", at_key=True))
    return problems
