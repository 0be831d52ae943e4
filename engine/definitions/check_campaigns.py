"""Checks of a ``campaign`` definition beyond its shape: real dates in order,
links to rules, coupon pools and forms that exist, targets on known KPIs.

Each problem carries the path of the node that is wrong; the loader turns it
into ``file:line:col``.
"""

from __future__ import annotations

from datetime import date

from .catalog import TARGET_METRICS
from .context import Context, Problems
from .errors import Problem, unknown

#: Which kind each link list of a campaign points at.
_LINKS = (("rules", "rule"), ("coupon_pools", "coupon_pool"), ("forms", "form"))


def _day(data: dict, key: str, problems: Problems) -> date | None:
    raw = data.get(key)
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(Problem((key,), "bad_date", f"`{key}` {raw} is not a real date"))
        return None


def check_campaign(ctx: Context, data: dict) -> Problems:
    """Problems of one campaign definition."""
    problems: Problems = []
    start, end = _day(data, "start", problems), _day(data, "end", problems)
    if start is not None and end is not None and end < start:
        problems.append(Problem(("end",), "end_before_start",
                                f"`end` {data['end']} is before `start` {data['start']}"))
    for key, kind in _LINKS:
        known = ctx.ids(kind)
        for i, ref in enumerate(data.get(key) or ()):
            if isinstance(ref, str) and ref not in known:
                problems.append(Problem((key, i), "unknown_ref", unknown(kind.replace("_", " "), ref, known)))
    seen: set[str] = set()
    for i, target in enumerate(data.get("targets") or ()):
        metric = target.get("metric") if isinstance(target, dict) else None
        if not isinstance(metric, str):
            continue
        if metric not in TARGET_METRICS:
            problems.append(Problem(("targets", i, "metric"), "unknown_metric", unknown("KPI", metric, TARGET_METRICS)))
        elif metric in seen:
            problems.append(Problem(("targets", i, "metric"), "duplicate", f"a target on `{metric}` is set twice"))
        seen.add(metric)
    return problems


#: What each part of a form's ``campaign:`` must point at: field types.
CAMPAIGN_FIELD_TYPES = {
    "title": ("text",), "start": ("date",), "end": ("date",), "budget": ("money", "number", "integer"),
    "channel": ("select", "text"), "materials": ("table",), "targets": ("table",),
    "rules": ("multiselect", "select", "text"), "coupon_pools": ("multiselect", "select", "text"),
    "attribution_window": ("integer",),
}
#: Columns a ``materials`` table needs (cost = qty × unit_cost) and a ``targets`` table needs.
TABLE_COLUMNS = {"materials": ("qty", "unit_cost"), "targets": ("metric", "target")}


def check_form_campaign(data: dict, fields: list) -> Problems:
    """A form's ``campaign:`` names fields of the form of fitting types; a
    materials table has ``qty`` and ``unit_cost`` columns, a targets table
    ``metric`` and ``target``."""
    spec = data.get("campaign")
    if not isinstance(spec, dict):
        return []
    by_key = {f.get("key"): f for f in fields if isinstance(f, dict)}
    problems: Problems = []
    for part, key in spec.items():
        allowed = CAMPAIGN_FIELD_TYPES.get(part)
        if allowed is None or not isinstance(key, str):
            continue
        field = by_key.get(key)
        if field is None:
            problems.append(Problem(("campaign", part), "unknown_ref",
                                    unknown("field", key, [k for k in by_key if isinstance(k, str)])))
        elif field.get("type") not in allowed:
            problems.append(Problem(("campaign", part), "wrong_type",
                                    f"`{part}` must name a {' or '.join(allowed)} field; `{key}` is {field.get('type')}"))
        elif part in TABLE_COLUMNS:
            columns = {c.get("key") for c in field.get("fields") or () if isinstance(c, dict)}
            missing = [c for c in TABLE_COLUMNS[part] if c not in columns]
            if missing:
                problems.append(Problem(("campaign", part), "missing_columns",
                                        f"table `{key}` needs the columns {', '.join(missing)}"))
    return problems


__all__ = ["CAMPAIGN_FIELD_TYPES", "check_campaign", "check_form_campaign"]
