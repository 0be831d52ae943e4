"""FormSpec → JSON Schema (Draft 2020-12) for the API and the OpenAPI document.

The schema describes the payload shape a client may send; it is a first,
cheap gate and documentation. The authority is :func:`engine.forms.validate.
validate_submission`, which also runs the rules a schema cannot state
(``visible_if``, ``required_if``, ``after``, ``today``, existence lookups).
A payload the validator accepts always passes the schema.
"""

from __future__ import annotations

import threading
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from engine.definitions.specs import FieldSpec, FormSpec

from .types import (
    MAX_FILES,
    MAX_INTEGER,
    MAX_LIST_ITEMS,
    MAX_NUMBER,
    MAX_SHORT,
    MAX_TABLE_ROWS,
    MAX_TEXT,
    MAX_TEXTAREA,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_FILE_REF = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,128}$"},
        "name": {"type": "string", "minLength": 1, "maxLength": 255},
        "size": {"type": "integer", "minimum": 0},
        "content_type": {"type": "string", "maxLength": 255},
    },
    "required": ["id", "name", "size"],
    "additionalProperties": False,
}


def field_json_schema(f: FieldSpec) -> dict[str, Any]:
    """The schema of one field's value (without null)."""
    t = f.type
    s: dict[str, Any]
    if t in ("text", "textarea"):
        cap = MAX_TEXTAREA if t == "textarea" else MAX_TEXT
        s = {"type": "string", "maxLength": min(cap, f.max_length) if f.max_length is not None else cap}
        if f.pattern:
            s["pattern"] = f"^(?:{f.pattern})$"
    elif t == "integer":
        s = {"type": "integer", "minimum": -MAX_INTEGER, "maximum": MAX_INTEGER}
        _numeric_bounds(s, f)
    elif t == "number":
        s = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}
        _numeric_bounds(s, f)
    elif t == "money":
        s = {"type": ["string", "number"], "pattern": "^\\s*-?[0-9]{1,12}(\\.[0-9]+)?\\s*$",
             "format": "decimal", "x-promoflow-type": "money",
             "description": "an amount with at most two decimals; returned as text such as \"60000.00\""}
        _numeric_bounds(s, f)
    elif t == "date":
        s = {"type": "string", "format": "date"}
    elif t == "datetime":
        s = {"type": "string", "format": "date-time",
             "description": "ISO 8601; without an offset the time is UTC (as returned)"}
    elif t == "select":
        s = {"enum": list(f.option_values)}
    elif t == "multiselect":
        s = {"type": "array", "items": {"enum": list(f.option_values)}, "maxItems": MAX_LIST_ITEMS}
    elif t == "checkbox":
        s = {"type": "boolean"}
    elif t == "phone":
        patterns = {"cn": "^(\\+86)?1[3-9][0-9]{9}$", "e164": "^\\+[1-9][0-9]{6,14}$"}
        s = {"type": "string", "maxLength": MAX_SHORT}
        if f.phone_region in patterns:
            s["description"] = {"cn": "mainland China mobile", "e164": "E.164"}[f.phone_region]
    elif t == "email":
        s = {"type": "string", "format": "email", "maxLength": 320}
    elif t == "url":
        s = {"type": "string", "format": "uri", "pattern": "^\\s*[Hh][Tt][Tt][Pp][Ss]?://", "maxLength": MAX_SHORT}
    elif t == "customer":
        s = {"type": ["integer", "string"], "minimum": 1, "pattern": "^\\s*[0-9]{1,18}\\s*$",
             "description": "a customer id"}
    elif t == "user":
        s = {"type": "string", "minLength": 1, "maxLength": MAX_SHORT, "description": "a user name"}
    elif t == "file":
        s = {"oneOf": [_FILE_REF, {"type": "array", "items": _FILE_REF, "maxItems": MAX_FILES}]}
        if f.accept:
            s["x-accept"] = list(f.accept)
        if f.max_size_bytes is not None:
            s["x-max-size-bytes"] = f.max_size_bytes
    elif t == "table":
        row = _object_schema(f.fields)
        s = {"type": "array", "items": row,
             "maxItems": min(MAX_TABLE_ROWS, f.max_rows if f.max_rows is not None else MAX_TABLE_ROWS)}
    else:  # pragma: no cover - the loader admits only known types
        s = {}
    return s


def _numeric_bounds(s: dict[str, Any], f: FieldSpec) -> None:
    for key, keyword in (("min", "minimum"), ("max", "maximum")):
        bound = getattr(f, key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            s[keyword] = bound


def _property(f: FieldSpec) -> dict[str, Any]:
    value = field_json_schema(f)
    prop: dict[str, Any] = {"anyOf": [value, {"type": "null"}]} if not _always_required(f) else dict(value)
    prop["title"] = f.label
    if f.label_en:
        prop["x-title-en"] = f.label_en
    if f.help:
        prop["description"] = f.help if "description" not in prop else f"{f.help} ({prop['description']})"
    if f.readonly:
        prop["readOnly"] = True
    if f.default is not None and f.default not in ("today", "now", "current_user"):
        prop["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
    return prop


def _always_required(f: FieldSpec) -> bool:
    """Required in every payload: no condition, default or read-only state can excuse it."""
    return f.required and f.visible_if is None and f.default is None and not f.readonly and f.type != "checkbox"


def _object_schema(fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f.key: _property(f) for f in fields},
        "required": [f.key for f in fields if _always_required(f)],
        "additionalProperties": False,
    }


def form_json_schema(form: FormSpec) -> dict[str, Any]:
    """The Draft 2020-12 schema of a submission payload for ``form`` (a new dict each call)."""
    schema = {"$schema": DIALECT, "$id": f"urn:promoflow:form:{form.id}", "title": form.title}
    if form.description:
        schema["description"] = form.description
    schema.update(_object_schema(form.fields))
    return schema


_VALIDATORS: dict[tuple[str, int], tuple[FormSpec, Draft202012Validator]] = {}
_LOCK = threading.Lock()


def compiled_validator(form: FormSpec, version: int) -> Draft202012Validator:
    """The compiled schema validator of ``form`` at ``version``, built once and cached.

    A cached entry is reused only for the very spec it was built from, so a
    test that loads a different spec under the same (id, version) gets its own.
    """
    key = (form.id, version)
    entry = _VALIDATORS.get(key)
    if entry is not None and entry[0] is form:
        return entry[1]
    # No format checker: formats are annotations here; the validator owns those rules.
    validator = Draft202012Validator(form_json_schema(form))
    with _LOCK:
        _VALIDATORS[key] = (form, validator)
    return validator


__all__ = ["DIALECT", "compiled_validator", "field_json_schema", "form_json_schema"]
