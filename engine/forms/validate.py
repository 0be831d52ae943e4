"""Server-side validation of a submission against a FormSpec: the one path for
the HTML page (after :mod:`engine.forms.coerce`) and the REST API.

Order of work, for the top level and for each sub-table row alike:

1. unknown keys are errors (``unknown_field``), read-only fields keep their value;
2. each given value is converted by its type (:mod:`engine.forms.types`);
   defaults (``today``, ``now``, ``current_user`` or a literal) fill absent keys;
3. ``visible_if`` is evaluated on the converted data: hidden fields lose their
   value and every error, and are never required;
4. ``required`` / ``required_if``, sub-table row counts, ``after`` / ``before``.

Whatever JSON arrives, the result is ``(clean, errors)``; nothing raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from engine.conditions.kinds import FieldKind
from engine.conditions.predicate import compile_predicate
from engine.definitions.specs import FieldSpec, FormSpec

from .errors import FieldError
from .types import CONVERTERS, MAX_TABLE_ROWS, Env, Invalid, is_empty, parse_datetime
from .values import condition_row

_MAX_KEY_SHOWN = 200
_MAX_UNKNOWN_REPORTED = 20
_Predicate = Callable[[Mapping[str, object], datetime], bool]
_PREDICATES: dict[int, _Predicate] = {}


def validate_submission(
    form: FormSpec,
    payload: Mapping[str, Any],
    *,
    now: datetime,
    tz: str = "Asia/Shanghai",
    user: str | None = None,
    existing: Mapping[str, Any] | None = None,
    partial: bool = False,
    customer_exists: Callable[[int], bool] | None = None,
    user_exists: Callable[[str], bool] | None = None,
    allow_readonly: bool = False,
) -> tuple[dict[str, Any], list[FieldError]]:
    """Validate ``payload`` for ``form``; return the clean data and every error.

    ``clean`` is JSON-ready (see :mod:`engine.forms.types` for the stored shape
    of each type) and holds only visible fields with a value. It is only
    meaningful when ``errors`` is empty. ``now`` (aware) and ``tz`` resolve
    ``today``/``now`` defaults and bounds and naive datetimes; ``user`` fills
    ``current_user`` defaults. ``partial=True`` (PATCH): only the keys given are
    converted and they are merged onto ``existing`` (stored data); the rules of
    step 3–4 then run on the merged data, and ``clean`` is the merged record
    (a key given as ``null`` or ``""`` clears that field). ``allow_readonly``
    lets trusted callers (workflows) write read-only fields.
    """
    env = Env(now=now, tz=tz, user=user, customer_exists=customer_exists, user_exists=user_exists)
    if not isinstance(payload, Mapping):
        return {}, [FieldError("", "object_type")]
    base = dict(existing or {}) if partial else None
    errors: list[FieldError] = []
    clean = _group(form.fields, payload, env, "", base, allow_readonly, errors)
    return clean, errors


def _path(prefix: str, key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    if len(text) > _MAX_KEY_SHOWN:
        text = text[:_MAX_KEY_SHOWN] + "…"
    return prefix + text


def default_value(f: FieldSpec, env: Env) -> Any:
    """The value of ``f.default`` at ``env.now`` (None when it has none or it resolves to nothing)."""
    d = f.default
    if d is None:
        return None
    if d == "today" and f.type in ("date", "datetime"):
        today = env.today()
        return today.isoformat() if f.type == "date" else _convert(f, datetime.combine(today, datetime.min.time()), env)
    if d == "now" and f.type == "datetime":
        return _convert(f, env.now, env)
    if d == "current_user" and f.type == "user":
        return env.user
    if isinstance(d, tuple):
        d = list(d)
    try:
        return _convert(f, d, env)
    except Invalid:
        return None


def _convert(f: FieldSpec, value: Any, env: Env) -> Any:
    return CONVERTERS[f.type](value, f, env)


def _group(
    fields: tuple[FieldSpec, ...],
    payload: Mapping[str, Any],
    env: Env,
    prefix: str,
    base: dict[str, Any] | None,
    allow_readonly: bool,
    errors: list[FieldError],
) -> dict[str, Any]:
    """Validate one object (the form, or one sub-table row) and return its clean data."""
    by_key = {f.key: f for f in fields}
    unknown = [key for key in payload if key not in by_key]
    # A flood of junk keys gets a bounded answer.
    errors.extend(FieldError(_path(prefix, key), "unknown_field") for key in unknown[:_MAX_UNKNOWN_REPORTED])
    partial = base is not None
    data: dict[str, Any] = dict(base) if base is not None else {}
    field_errors: dict[str, list[FieldError]] = {}
    for f in fields:
        path = prefix + f.key
        if f.key not in payload:
            if not partial:
                value = default_value(f, env)
                if value is not None:
                    data[f.key] = value
            continue
        raw = payload[f.key]
        local: list[FieldError] = []
        value = _value(f, raw, env, path, local)
        if f.readonly and not allow_readonly and not local:
            current = data.get(f.key) if partial else default_value(f, env)
            if value != current and not (value is None and current is None):
                local = [FieldError(path, "readonly")]
        if local:
            field_errors[f.key] = local
            data.pop(f.key, None)
        elif value is None:
            data.pop(f.key, None)
            if not partial:  # on create an empty value means "the default", as an absent one does
                fallback = default_value(f, env)
                if fallback is not None:
                    data[f.key] = fallback
        else:
            data[f.key] = value

    visible = _visibility(fields, data, env)
    for f in fields:
        if not visible[f.key]:
            data.pop(f.key, None)
            continue
        errors.extend(field_errors.get(f.key, ()))
        if f.key in field_errors:
            continue
        errors.extend(_rules(f, fields, data, env, prefix))
    return data


def _value(f: FieldSpec, raw: Any, env: Env, path: str, errors: list[FieldError]) -> Any:
    """Convert one given value; None means "no value" (empty input clears a field)."""
    if f.type == "table":
        return _table(f, raw, env, path, errors)
    if f.type == "checkbox":
        if raw is None:
            return None
    elif is_empty(raw):
        return None
    try:
        return _convert(f, raw, env)
    except Invalid as exc:
        errors.append(FieldError(path, exc.code, exc.ctx))
        return None
    except Exception:  # noqa: BLE001 - a converter bug must not turn into a 500
        errors.append(FieldError(path, _TYPE_CODE.get(f.type, "string_type")))
        return None


_TYPE_CODE = {"integer": "integer_type", "number": "number_type", "money": "money_type", "date": "date_type",
              "datetime": "datetime_type", "checkbox": "bool_type", "multiselect": "list_type"}


def _table(f: FieldSpec, raw: Any, env: Env, path: str, errors: list[FieldError]) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)):
        errors.append(FieldError(path, "list_type"))
        return None
    limit = min(MAX_TABLE_ROWS, f.max_rows if f.max_rows is not None else MAX_TABLE_ROWS)
    if len(raw) > limit:
        errors.append(FieldError(path, "max_rows", {"max_rows": limit}))
        return None
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(raw):
        row_path = f"{path}[{i}]"
        if not isinstance(row, Mapping):
            errors.append(FieldError(row_path, "object_type"))
            continue
        rows.append(_group(f.fields, row, env, row_path + ".", None, False, errors))
    return rows


def _predicate(cond: Any, fields: tuple[FieldSpec, ...]) -> _Predicate:
    key = id(cond)
    cached = _PREDICATES.get(key)
    if cached is None:
        kinds: dict[str, FieldKind] = {f.key: f.kind for f in fields if f.kind is not None}
        cached = compile_predicate(cond, kinds=kinds)
        _PREDICATES[key] = cached
        # Conditions live as long as their (cached) specs; keep the tree alive so ids stay unique.
        _KEEP.append(cond)
    return cached


_KEEP: list[Any] = []


def _holds(cond: Any, fields: tuple[FieldSpec, ...], row: Mapping[str, Any], env: Env) -> bool:
    try:
        return bool(_predicate(cond, fields)(row, env.now))
    except Exception:  # noqa: BLE001 - a bad condition hides nothing and requires nothing
        return False


def _visibility(fields: tuple[FieldSpec, ...], data: dict[str, Any], env: Env) -> dict[str, bool]:
    """Which fields are visible; a hidden field's value does not count for others."""
    visible = {f.key: True for f in fields}
    for _ in range(len(fields) + 1):
        view = condition_row(fields, {k: v for k, v in data.items() if visible.get(k, True)})
        changed = False
        for f in fields:
            if f.visible_if is None:
                continue
            now_visible = _holds(f.visible_if, fields, view, env)
            if now_visible != visible[f.key]:
                visible[f.key] = now_visible
                changed = True
        if not changed:
            break
    return visible


def _rules(f: FieldSpec, fields: tuple[FieldSpec, ...], data: dict[str, Any], env: Env, prefix: str) -> list[FieldError]:
    path = prefix + f.key
    value = data.get(f.key)
    required = f.required or (
        f.required_if is not None and _holds(f.required_if, fields, condition_row(fields, data), env)
    )
    if f.type == "checkbox":
        missing = value is None or (f.required and value is False)
    else:
        missing = is_empty(value)
    if missing:
        if required:
            return [FieldError(path, "required")]
        if f.type == "table" and f.min_rows:
            return [FieldError(path, "min_rows", {"min_rows": f.min_rows})]
        return []
    problems: list[FieldError] = []
    if f.type == "table":
        rows = value if isinstance(value, list) else []
        if f.min_rows is not None and len(rows) < f.min_rows:
            problems.append(FieldError(path, "min_rows", {"min_rows": f.min_rows}))
        if f.max_rows is not None and len(rows) > f.max_rows:
            problems.append(FieldError(path, "max_rows", {"max_rows": f.max_rows}))
    for rule in ("after", "before"):
        other_key = getattr(f, rule)
        if other_key is None or other_key not in data:
            continue
        other = next((o for o in fields if o.key == other_key), None)
        if other is None:
            continue
        ordered = _compare(value, f.type, data[other_key], other.type, env)
        if ordered is None:
            continue
        if (rule == "after" and ordered <= 0) or (rule == "before" and ordered >= 0):
            problems.append(FieldError(path, rule, {
                "other": other_key, "other_label": other.label, "other_label_en": other.label_en or other.label,
            }))
    return problems


def _compare(a: Any, a_type: str, b: Any, b_type: str, env: Env) -> int | None:
    """-1/0/1 comparing two stored date/datetime values (a date against a datetime by local date)."""
    try:
        if a_type == b_type:
            return int((a > b) - (a < b))
        da = _local_date(a, a_type, env)
        db = _local_date(b, b_type, env)
        return (da > db) - (da < db)
    except (TypeError, ValueError, Invalid):
        return None


def _local_date(value: str, kind: str, env: Env) -> str:
    if kind == "date":
        return value
    moment = parse_datetime(value + "+00:00", env)
    return moment.astimezone(env.zone).date().isoformat()


__all__ = ["default_value", "validate_submission"]
