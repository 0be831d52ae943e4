"""A FormSpec becomes a WTForms class for the HTML fill page.

The class only renders and re-displays: validation is the engine's
(``engine.forms.coerce`` turns the posted strings into a payload, the record
service validates it), and its :class:`FieldError` paths are put back on the
fields here. Field names in the HTML are the definition keys, sub-table cells
``materials-0-qty``; the Python attributes are ``f_<key>`` so that a key such as
``data`` or ``errors`` cannot collide with the WTForms API.

``visible_if`` / ``required_if`` travel to the browser as JSON in
``data-visible-if`` / ``data-required-if`` attributes, read by
``static/form.js`` (a small evaluator of the condition data, no ``eval``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from wtforms import Form
from wtforms import fields as wf
from wtforms.widgets import CheckboxInput, ListWidget

try:
    from wtforms.fields.choices import SelectChoice as _SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.2 takes (value, label) tuples
    _SelectChoice = None  # type: ignore[assignment,misc]

from engine.conditions.ast import All, Compare, Condition, Not, SegmentRef
from engine.conditions.ast import Any as AnyOf
from engine.definitions.specs import FieldSpec, FormSpec

ATTR = "f_"


class RecordForm(Form):
    """Base of the generated classes; knows its spec to map keys to fields."""

    spec_fields: tuple[FieldSpec, ...] = ()

    def field_for(self, key: str) -> wf.Field | None:
        return self._fields.get(ATTR + key)

    def bound(self) -> list[tuple[FieldSpec, wf.Field]]:
        """(spec, bound field) pairs in definition order."""
        return [(f, self._fields[ATTR + f.key]) for f in self.spec_fields]


class _RowForm(Form):
    spec_fields: tuple[FieldSpec, ...] = ()

    def bound(self) -> list[tuple[FieldSpec, wf.Field]]:
        return [(f, self._fields[ATTR + f.key]) for f in self.spec_fields]


def _label(obj: Any, locale: str) -> str:
    if locale == "en" and getattr(obj, "label_en", None):
        return str(obj.label_en)
    return str(obj.label)


def _help(f: FieldSpec, locale: str) -> str:
    if locale == "en" and f.help_en:
        return f.help_en
    return f.help or ""


def condition_data(cond: Condition | None) -> Any:
    """A condition tree as plain JSON data for the browser's evaluator.

    Same shape as the definition language (``{field: {op: value}}``, ``all``,
    ``any``, ``not``); durations become a number of seconds, dates ISO text.
    """
    if cond is None:
        return None
    if isinstance(cond, All):
        return {"all": [condition_data(c) for c in cond.items]}
    if isinstance(cond, AnyOf):
        return {"any": [condition_data(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": condition_data(cond.item)}
    if isinstance(cond, Compare):
        return {cond.field: {cond.op: _json_value(cond.value)}}
    if isinstance(cond, SegmentRef):  # not meaningful on a form; never true in the browser
        return {"any": []}
    raise TypeError(f"not a condition: {cond!r}")


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _attrs(f: FieldSpec) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if f.visible_if is not None:
        kw["data-visible-if"] = json.dumps(condition_data(f.visible_if), ensure_ascii=False)
    if f.required_if is not None:
        kw["data-required-if"] = json.dumps(condition_data(f.required_if), ensure_ascii=False)
    if f.max_length:
        kw["maxlength"] = f.max_length
    if f.placeholder:
        kw["placeholder"] = f.placeholder
    if f.readonly:
        kw["disabled"] = True
    if f.type in ("integer", "number", "money"):
        if isinstance(f.min, int | float | Decimal) and not isinstance(f.min, bool):
            kw["min"] = f.min
        if isinstance(f.max, int | float | Decimal) and not isinstance(f.max, bool):
            kw["max"] = f.max
        kw["step"] = {"integer": "1", "money": "0.01"}.get(f.type, "any")
        kw["inputmode"] = "numeric" if f.type == "integer" else "decimal"
    if f.type == "file" and f.accept:
        kw["accept"] = ",".join(f.accept)
    return kw


def _choices(f: FieldSpec, locale: str, blank: str | None) -> list[Any]:
    pairs = [(str(o.value), _label(o, locale)) for o in f.options]
    if blank is not None:
        pairs.insert(0, ("", blank))
    if _SelectChoice is None:  # WTForms < 3.2
        return pairs
    return [_SelectChoice(value, text) for value, text in pairs]


def _unbound(f: FieldSpec, locale: str, choose: str) -> Any:
    """One WTForms field per definition field type."""
    common: dict[str, Any] = {"label": _label(f, locale), "description": _help(f, locale),
                              "render_kw": _attrs(f), "name": f.key}
    kind = f.type
    if kind == "textarea":
        return wf.TextAreaField(**common)
    if kind == "integer" and f.display == "scale" and isinstance(f.min, int) and isinstance(f.max, int):
        # A row of radio buttons min..max (NPS 0–10): one tap on a phone, no number box.
        scale = [str(n) for n in range(f.min, f.max + 1)]
        choices = [(n, n) if _SelectChoice is None else _SelectChoice(n, n) for n in scale]
        return wf.RadioField(choices=choices, coerce=str, validate_choice=False,
                             **{**common, "render_kw": {k: v for k, v in common["render_kw"].items()
                                                        if k not in ("min", "max", "step", "inputmode")}})
    if kind == "integer" or kind == "customer":
        return wf.IntegerField(**common)
    if kind in ("number", "money"):
        return wf.DecimalField(**common)
    if kind == "date":
        return wf.DateField(**common)
    if kind == "datetime":
        return wf.DateTimeLocalField(format=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"], **common)
    if kind == "select":
        return wf.SelectField(choices=_choices(f, locale, choose), validate_choice=False, **common)
    if kind == "multiselect":
        return wf.SelectMultipleField(choices=_choices(f, locale, None), validate_choice=False,
                                      widget=ListWidget(prefix_label=False), option_widget=CheckboxInput(),
                                      **common)
    if kind == "checkbox":
        return wf.BooleanField(**common)
    if kind == "phone":
        return wf.TelField(**common)
    if kind == "email":
        return wf.EmailField(**common)
    if kind == "url":
        return wf.URLField(**common)
    if kind == "file":
        return wf.FileField(**common)
    if kind == "table":
        row_cls = type(f"Row_{f.key}", (_RowForm,), {
            "spec_fields": f.fields, **{ATTR + c.key: _unbound(c, locale, choose) for c in f.fields}})
        minimum = max(f.min_rows or 0, 1)
        return wf.FieldList(wf.FormField(row_cls), min_entries=minimum, max_entries=f.max_rows or 1000,
                            label=common["label"], description=common["description"],
                            render_kw=common["render_kw"], name=f.key)
    return wf.StringField(**common)


def build_form_class(spec: FormSpec, locale: str, choose: str = "—") -> type[RecordForm]:
    """A RecordForm subclass for ``spec`` with labels in ``locale``."""
    attrs: dict[str, Any] = {"spec_fields": spec.fields}
    for f in spec.fields:
        attrs[ATTR + f.key] = _unbound(f, locale, choose)
    return type(f"Form_{spec.id}", (RecordForm,), attrs)


# ------------------------------------------------------------- values

def display_value(f: FieldSpec, stored: Any, tz: str) -> Any:
    """A stored (JSON) value as the Python value its WTForms field displays."""
    if stored is None:
        return None
    try:
        if f.type == "date" and isinstance(stored, str):
            return date.fromisoformat(stored[:10])
        if f.type == "datetime" and isinstance(stored, str):
            moment = datetime.fromisoformat(stored)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=ZoneInfo("UTC"))
            return moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None)
        if f.type in ("money", "number") and not isinstance(stored, bool):
            return Decimal(str(stored))
        if f.type == "multiselect" and isinstance(stored, list):
            return [str(v) for v in stored]
        if f.type == "select":
            return str(stored)
        if f.type == "table" and isinstance(stored, list):
            return [{ATTR + c.key: display_value(c, row.get(c.key), tz) for c in f.fields}
                    for row in stored if isinstance(row, Mapping)]
        if f.type == "file":
            return None
    except (ValueError, TypeError, InvalidOperation):
        return None
    return stored


def initial_data(spec: FormSpec, values: Mapping[str, Any], tz: str) -> dict[str, Any]:
    """``data=`` for a generated form class from stored-shape ``values``."""
    return {ATTR + f.key: display_value(f, values.get(f.key), tz) for f in spec.fields if f.key in values}


def apply_errors(form: RecordForm, errors: list[Any], locale: str) -> list[str]:
    """Put each FieldError on its field (``materials[0].qty`` → that cell);
    return the messages that fit no field (shown at the top of the form)."""
    leftover: list[str] = []
    for error in errors:
        message = error.message(locale)
        field = _locate(form, error.field)
        if field is None or isinstance(field, wf.FormField):
            leftover.append(f"{error.field}: {message}" if error.field else message)
            continue
        field.errors = [*list(field.errors or ()), message]
    return leftover


def _locate(form: Any, path: str) -> wf.Field | None:
    if not path:
        return None
    head, _, rest = path.partition(".")
    index = None
    if head.endswith("]") and "[" in head:
        head, _, idx = head[:-1].partition("[")
        try:
            index = int(idx)
        except ValueError:
            return None
    field = form._fields.get(ATTR + head)
    if field is None:
        return None
    if index is None:
        return field if not rest else None
    if not isinstance(field, wf.FieldList) or not 0 <= index < len(field.entries):
        return field
    entry = field.entries[index]
    if not rest:
        return entry
    return _locate(entry.form, rest) or entry
