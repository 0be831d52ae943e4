"""Checks of forms and fieldsets that a JSON Schema cannot express.

Field problems users otherwise meet only when a record is refused at 5 pm on
launch day: options on a text field, ``after:`` pointing at a number, a
``visible_if`` on a field that does not exist, ``min`` above ``max``, a regex
that does not compile.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Iterable

from engine.conditions.check import check_condition
from engine.conditions.kinds import FieldKind
from engine.conditions.parse import parse_condition

from .catalog import BUILTIN_ROLES
from .context import Context, Problems
from .errors import Path, Problem, did_you_mean, unknown
from .specs import FIELD_KIND_OF_TYPE

NUMERIC = {"integer", "number", "money"}
DATES = {"date", "datetime"}
TEXTUAL = {"text", "textarea", "phone", "email", "url"}
CHOICE = {"select", "multiselect"}
DEFAULT_TOKENS = {"today": DATES, "now": {"datetime"}, "current_user": {"user"}}


#: The widest ``display: scale`` (0–10 is 11 buttons; more would not fit a phone).
MAX_SCALE_STEPS = 10


def expand_fields(
    ctx: Context, fields: list, path: Path, problems: Problems, stack: tuple[str, ...] = ()
) -> list[tuple[dict, Path]]:
    """A form's fields with ``include:`` replaced by the fieldset's fields.

    Reports unknown fieldsets and include cycles at the ``include`` item.
    """
    out: list[tuple[dict, Path]] = []
    for i, item in enumerate(fields):
        if not isinstance(item, dict):
            continue
        if "include" in item:
            target = item["include"]
            if target in stack:
                cycle = " → ".join(stack + (target,))
                problems.append(Problem(path + (i, "include"), "include_cycle", f"include cycle: {cycle}"))
                continue
            fieldset = ctx.get("fieldset", target)
            if fieldset is None:
                if target not in ctx.ids("fieldset"):
                    problems.append(Problem(path + (i, "include"), "unknown_ref", unknown("fieldset", target, ctx.ids("fieldset"))))
                continue
            sub: Problems = []
            nested = expand_fields(ctx, fieldset["fields"], (), sub, stack + (target,))
            if any(p.code == "include_cycle" for p in sub):
                problems.append(Problem(path + (i, "include"), "include_cycle",
                                        next(p.message for p in sub if p.code == "include_cycle")))
            out.extend((f, path + (i, "include")) for f, _ in nested)
        else:
            out.append((item, path + (i,)))
    return out


def field_kinds(fields: Iterable[dict]) -> dict[str, FieldKind]:
    kinds = ((f["key"], FIELD_KIND_OF_TYPE.get(f["type"])) for f in fields)
    return {key: kind for key, kind in kinds if kind is not None}


def check_form(ctx: Context, data: dict, *, kind: str = "form") -> Problems:
    problems: Problems = []
    expanded = expand_fields(ctx, data["fields"], ("fields",), problems, (data["id"],) if kind == "fieldset" else ())
    seen: dict[str, Path] = {}
    for f, fpath in expanded:
        if f["key"] in seen:
            problems.append(Problem(fpath + (("key",) if fpath[-1] != "include" else ()), "duplicate_field",
                                    f"field `{f['key']}` is defined twice"))
        else:
            seen[f["key"]] = fpath
    by_key = {f["key"]: f for f, _ in expanded}
    kinds = field_kinds(by_key.values())
    for i, f in enumerate(data["fields"]):
        if isinstance(f, dict) and "include" not in f:
            problems.extend(check_field(f, ("fields", i), by_key, kinds))
    if kind == "form":
        problems.extend(_check_binding(data, by_key))
    for key in ("submit_roles", "view_roles"):
        for j, role in enumerate(data.get(key, ())):
            if role not in ctx.ids("role") and role not in BUILTIN_ROLES:
                problems.append(Problem((key, j), "unknown_ref", unknown("role", role, ctx.ids("role") | BUILTIN_ROLES)))
    return problems


#: Field types that can say whose record it is (``customer: {field: …}``).
CUSTOMER_BINDING_TYPES = ("customer", "phone")


def _check_binding(data: dict, by_key: dict[str, dict]) -> Problems:
    """``customer: {field}`` names a customer or phone field; ``on_submit``
    needs it (its steps act on that customer)."""
    problems: Problems = []
    binding = data.get("customer")
    if binding is not None:
        key = binding.get("field")
        target = by_key.get(key)
        if target is None:
            problems.append(Problem(("customer", "field"), "unknown_field", unknown("field", key, by_key)))
        elif target.get("type") not in CUSTOMER_BINDING_TYPES:
            problems.append(Problem(("customer", "field"), "bad_binding",
                                    f"`customer` takes a customer or phone field; `{key}` is a {target.get('type')} field"))
    if data.get("on_submit") and binding is None:
        problems.append(Problem(("on_submit",), "missing_binding",
                                "`on_submit` acts on the record's customer: add `customer: {field: KEY}` "
                                "naming the form's customer or phone field", at_key=True))
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_iso(value: object, kind: str) -> bool:
    try:
        (date if kind == "date" else datetime).fromisoformat(str(value))
        return True
    except ValueError:
        return False


def check_field(f: dict, path: Path, siblings: dict[str, dict], kinds: dict[str, FieldKind]) -> Problems:
    """One field's own rules, and its references to its siblings."""
    problems: Problems = []
    t = f["type"]
    key = f["key"]

    def bad(sub: str, message: str, code: str = "field_rule", at_key: bool = True) -> None:
        problems.append(Problem(path + (sub,), code, message, at_key=at_key))

    if t in CHOICE and "options" not in f:
        problems.append(Problem(path + ("type",), "missing_options", f"a {t} field needs `options`"))
    if "options" in f and t not in CHOICE:
        bad("options", f"`options` applies to select and multiselect fields, not to {t} field `{key}`")
    if "options" in f:
        values = [o["value"] if isinstance(o, dict) else o for o in f["options"]]
        for j, v in enumerate(values):
            if values.index(v) != j:
                problems.append(Problem(path + ("options", j), "duplicate_option", f"option `{v}` is listed twice"))
    if t == "table":
        if "fields" not in f:
            problems.append(Problem(path + ("type",), "missing_fields", "a table field needs `fields` (its columns)"))
        else:
            sub_by_key: dict[str, dict] = {}
            for j, sub in enumerate(f["fields"]):
                if sub["key"] in sub_by_key:
                    problems.append(Problem(path + ("fields", j, "key"), "duplicate_field",
                                            f"column `{sub['key']}` is defined twice in table `{key}`"))
                sub_by_key[sub["key"]] = sub
                if sub["type"] == "table":
                    problems.append(Problem(path + ("fields", j, "type"), "nested_table", "a table cannot contain another table"))
            sub_kinds = field_kinds(sub_by_key.values())
            for j, sub in enumerate(f["fields"]):
                problems.extend(check_field(sub, path + ("fields", j), sub_by_key, sub_kinds))
        if "min_rows" in f and "max_rows" in f and f["min_rows"] > f["max_rows"]:
            bad("min_rows", f"`min_rows` ({f['min_rows']}) is greater than `max_rows` ({f['max_rows']})", at_key=False)
    else:
        for k in ("fields", "min_rows", "max_rows"):
            if k in f:
                bad(k, f"`{k}` applies to table fields, not to {t} field `{key}`")
    for k in ("min", "max"):
        if k in f:
            if t in NUMERIC:
                if not _is_number(f[k]):
                    problems.append(Problem(path + (k,), "type", f"`{k}` of {t} field `{key}` must be a number"))
            elif t in DATES:
                if not (f[k] in ("today", "now") or _parse_iso(f[k], t)):
                    problems.append(Problem(path + (k,), "type", f"`{k}` of {t} field `{key}` must be an ISO {t} or `today`"))
            else:
                bad(k, f"`{k}` applies to number and date fields, not to {t} field `{key}`; use `{k}_length` for text")
    if t in NUMERIC and _is_number(f.get("min")) and _is_number(f.get("max")) and f["min"] > f["max"]:
        problems.append(Problem(path + ("min",), "min_max", f"`min` ({f['min']}) is greater than `max` ({f['max']})"))
    for k in ("min_length", "max_length", "pattern"):
        if k in f and t not in TEXTUAL:
            bad(k, f"`{k}` applies to text fields, not to {t} field `{key}`")
    if "min_length" in f and "max_length" in f and f["min_length"] > f["max_length"]:
        problems.append(Problem(path + ("min_length",), "min_max",
                                f"`min_length` ({f['min_length']}) is greater than `max_length` ({f['max_length']})"))
    if "pattern" in f:
        try:
            re.compile(f["pattern"])
        except re.error as exc:
            problems.append(Problem(path + ("pattern",), "bad_pattern", f"`pattern` is not a valid regular expression: {exc}"))
    if f.get("display") == "scale" and not (
            t == "integer" and isinstance(f.get("min"), int) and isinstance(f.get("max"), int)
            and 0 <= f["max"] - f["min"] <= MAX_SCALE_STEPS):
        bad("display", f"`display: scale` needs an integer field with `min` and `max` at most "
                       f"{MAX_SCALE_STEPS} apart (`{key}`)")
    if "phone_region" in f and t != "phone":
        bad("phone_region", f"`phone_region` applies to phone fields, not to {t} field `{key}`")
    for k in ("accept", "max_size"):
        if k in f and t != "file":
            bad(k, f"`{k}` applies to file fields, not to {t} field `{key}`")
    if f.get("unique") and t in ("table", "file", "checkbox", "multiselect"):
        bad("unique", f"`unique` does not apply to {t} fields")
    if "default" in f:
        problems.extend(_check_default(f, path))
    for k in ("after", "before"):
        if k in f:
            other = f[k]
            if t not in DATES:
                bad(k, f"`{k}` applies to date fields, not to {t} field `{key}`")
            elif other == key:
                problems.append(Problem(path + (k,), "self_ref", f"field `{key}` cannot be `{k}` itself"))
            elif other not in siblings:
                problems.append(Problem(path + (k,), "unknown_ref", unknown("field", other, siblings)))
            elif siblings[other]["type"] not in DATES:
                problems.append(Problem(path + (k,), "type", f"`{k}: {other}` must name a date field; `{other}` is {siblings[other]['type']}"))
    for k in ("visible_if", "required_if"):
        if k in f:
            cond, parse_problems = parse_condition(f[k], path + (k,))
            problems.extend(parse_problems)
            if cond is not None:
                others = {name: kind for name, kind in kinds.items() if name != key}
                problems.extend(check_condition(cond, others, what="field"))
                problems.extend(_check_options(cond, siblings))
    if f.get("required") and "required_if" in f:
        bad("required_if", f"field `{key}` is always required; drop `required: true` or `required_if`")
    return problems


def _check_default(f: dict, path: Path) -> Problems:
    t, value, key = f["type"], f["default"], f["key"]
    where = path + ("default",)
    if isinstance(value, str) and value in DEFAULT_TOKENS:
        if t not in DEFAULT_TOKENS[value]:
            return [Problem(where, "default", f"default `{value}` does not apply to {t} field `{key}`")]
        return []
    ok = True
    if t in NUMERIC:
        ok = _is_number(value)
    elif t in DATES:
        ok = _parse_iso(value, t)
    elif t == "checkbox":
        ok = isinstance(value, bool)
    elif t == "select":
        ok = value in [o["value"] if isinstance(o, dict) else o for o in f.get("options", ())]
        if not ok:
            return [Problem(where, "default", f"default `{value}` is not one of the options of `{key}`")]
    elif t == "multiselect":
        opts = [o["value"] if isinstance(o, dict) else o for o in f.get("options", ())]
        ok = isinstance(value, list) and all(v in opts for v in value)
    elif t in TEXTUAL:
        ok = isinstance(value, str)
    if not ok:
        return [Problem(where, "default", f"default `{value}` does not fit {t} field `{key}`")]
    return []


def _check_options(cond: object, siblings: dict[str, dict]) -> Problems:
    """A condition comparing a select field with a value that is not an option
    can never be true: almost always a typo."""
    from engine.conditions.ast import All, Any, Compare, Not

    problems: Problems = []
    stack = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, (All, Any)):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, Compare) and node.field in siblings and siblings[node.field]["type"] in CHOICE:
            opts = [o["value"] if isinstance(o, dict) else o for o in siblings[node.field].get("options", ())]
            values = node.value if isinstance(node.value, tuple) else (node.value,)
            if node.op in ("eq", "ne", "in", "not_in", "contains", "not_contains"):
                for v in values:
                    if v not in opts:
                        problems.append(Problem(node.path, "unknown_option",
                                                f"unknown option `{v}` of `{node.field}`"
                                                f"{did_you_mean(str(v), [str(o) for o in opts])}"))
    return problems
