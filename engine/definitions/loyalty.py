"""The loyalty definitions: ``points_policy`` (how orders earn points) and
``tier`` (membership levels by points earned or money spent over a window).

Both are data a business edits and publishes like a rule::

    kind: points_policy
    id: member_points
    title: 会员积分
    per_yuan: 1                 # points per yuan of an order's net amount
    multipliers: {gold: 2}      # by tier level: gold members earn double
    validity: 365d              # points lapse this long after the order

    kind: tier
    id: membership
    title: 会员等级
    basis: spend                # or points (points earned in the window)
    window: 365d
    levels:
      - {key: silver, title: 银卡会员, title_en: Silver, min: 1000}
      - {key: gold, title: 金卡会员, title_en: Gold, min: 5000}

One enabled policy and one tier definition at most: a customer has one
balance and one tier, so two would contradict each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from engine.durations import parse_duration

from .context import Context, Problems
from .errors import Problem

__all__ = ["PointsPolicySpec", "TierLevel", "TierSpec", "build_points_policy", "build_tier",
           "check_points_policy", "check_tier"]


@dataclass(frozen=True)
class PointsPolicySpec:
    """Orders earn ``floor(net amount × per_yuan × multiplier of the customer's
    tier)`` points, valid for ``validity`` from the order's local day."""

    id: str
    title: str
    per_yuan: Decimal
    validity: timedelta
    multipliers: tuple[tuple[str, Decimal], ...] = ()
    reverse_on_refund: bool = True
    enabled: bool = True
    title_en: str | None = None
    source: object = None

    @property
    def validity_days(self) -> int:
        """Whole days: lots lapse at the start of a local day."""
        return max(1, self.validity.days)

    def multiplier(self, tier: str | None) -> Decimal:
        return dict(self.multipliers).get(tier or "", Decimal(1))


@dataclass(frozen=True)
class TierLevel:
    key: str
    title: str
    min: Decimal
    title_en: str | None = None


@dataclass(frozen=True)
class TierSpec:
    """Levels ordered by ``min`` ascending; a customer holds the highest level
    whose ``min`` their total over ``window`` reaches (none below the lowest)."""

    id: str
    title: str
    basis: str
    window: timedelta
    levels: tuple[TierLevel, ...]
    at: time = time(3, 0)
    timezone: str = "Asia/Shanghai"
    title_en: str | None = None
    source: object = None

    def level(self, key: str | None) -> TierLevel | None:
        return next((lv for lv in self.levels if lv.key == key), None)


def check_points_policy(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    enabled = [r.data["id"] for r in ctx.each("points_policy") if r.data.get("enabled", True)]
    if data.get("enabled", True) and len(enabled) > 1 and enabled[0] != data["id"]:
        problems.append(Problem(("id",), "one_points_policy",
                                f"only one enabled points policy is allowed; `{enabled[0]}` is enabled too"))
    levels = {lv.get("key") for t in ctx.each("tier") for lv in t.data.get("levels", ())}
    for key in data.get("multipliers", {}) or {}:
        if key not in levels:
            known = ", ".join(sorted(str(k) for k in levels)) or "none (define a `tier`)"
            problems.append(Problem(("multipliers", key), "unknown_tier_level",
                                    f"unknown tier level `{key}`; known levels: {known}"))
    return problems


def check_tier(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    ids = [r.data["id"] for r in ctx.each("tier")]
    if len(ids) > 1 and ids[0] != data["id"]:
        problems.append(Problem(("id",), "one_tier", f"only one tier definition is allowed; `{ids[0]}` exists"))
    seen: set[str] = set()
    last = None
    for i, level in enumerate(data.get("levels", ())):
        key = level.get("key")
        if key in seen:
            problems.append(Problem(("levels", i, "key"), "duplicate_level", f"level `{key}` is listed twice"))
        seen.add(key)
        low = level.get("min")
        if last is not None and isinstance(low, (int, float)) and low <= last:
            problems.append(Problem(("levels", i, "min"), "levels_order",
                                    "levels must be listed from the lowest `min` to the highest"))
        last = low if isinstance(low, (int, float)) else last
    tz = data.get("timezone")
    if isinstance(tz, str):
        try:
            ZoneInfo(tz)
        except (KeyError, ValueError):
            problems.append(Problem(("timezone",), "unknown_timezone",
                                    f"unknown time zone `{tz}` (an IANA name such as Asia/Shanghai)"))
    return problems


def _dec(value: object) -> Decimal:
    return Decimal(str(value))


def build_points_policy(ctx: Context, d: dict, src: object) -> PointsPolicySpec:
    return PointsPolicySpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), per_yuan=_dec(d["per_yuan"]),
        validity=parse_duration(d["validity"]),
        multipliers=tuple(sorted((k, _dec(v)) for k, v in (d.get("multipliers") or {}).items())),
        reverse_on_refund=d.get("reverse_on_refund", True), enabled=d.get("enabled", True), source=src)


def build_tier(ctx: Context, d: dict, src: object) -> TierSpec:
    hour, minute = (d.get("at") or "03:00").split(":")
    return TierSpec(
        id=d["id"], title=d["title"], title_en=d.get("title_en"), basis=d["basis"],
        window=parse_duration(d["window"]), at=time(int(hour), int(minute)),
        timezone=d.get("timezone", "Asia/Shanghai"), source=src,
        levels=tuple(TierLevel(lv["key"], lv["title"], _dec(lv["min"]), lv.get("title_en")) for lv in d["levels"]))
