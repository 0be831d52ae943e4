"""The shipped JSON Schemas (Draft 2020-12), and their errors in words a
business user can act on.

jsonschema's own messages ("Additional properties are not allowed ('budgt' was
unexpected)") are precise but not friendly; we turn each error into a
:class:`Problem` at the path of the node that is wrong, with a did-you-mean
for near misses. A schema may carry ``x-message`` to say what a pattern or a
choice means in plain words.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path as FsPath
from typing import Any, Iterator

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from engine.durations import DurationError, parse_duration

from .errors import Problem, did_you_mean

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("duration", raises=DurationError)
def _is_duration(value: object) -> bool:
    """Durations must parse and be positive (``0d`` would fire a wait at once)."""
    if isinstance(value, str):
        parse_duration(value)
    return True

SCHEMA_DIR = FsPath(__file__).parent / "schemas"
BASE_URI = "https://promoflow.dev/schemas/"

_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "empty",
}


def kinds() -> list[str]:
    """The definition kinds that have a shipped schema."""
    return sorted(p.name.split(".")[0] for p in SCHEMA_DIR.glob("*.schema.json") if not p.name.startswith("common"))


@cache
def _registry() -> Registry:
    resources = []
    for path in SCHEMA_DIR.glob("*.schema.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@cache
def validator(kind: str) -> Draft202012Validator:
    """The compiled validator for one kind (built once per process)."""
    schema = schema_document(kind)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(), format_checker=_FORMATS)


def schema_document(kind: str) -> dict[str, Any]:
    """The schema of a kind, e.g. for the designer or the OpenAPI document.

    A rule's step object is assembled here from the step types' fragments
    (:func:`engine.steps.registry.schema_properties`): the file holds the
    step's ``id`` only, so a step type (built in or a plug-in) is described
    in one place, its module."""
    schema = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text(encoding="utf-8"))
    if kind == "rule":
        from engine.steps.registry import schema_properties

        step = schema["$defs"]["step"]
        step["properties"] = {**step["properties"], **schema_properties()}
    return schema


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "empty"


def _name(path: tuple) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return f"`{part}`"
    return "this value"


def _type_message(error: ValidationError) -> str:
    expected: Any = error.validator_value
    words = [str(_TYPE_WORDS.get(t, t)) for t in (expected if isinstance(expected, list) else [expected])]
    hint = ""
    kinds = expected if isinstance(expected, list) else [expected]
    if "string" in kinds and isinstance(error.instance, (int, float)):
        hint = "; put it in quotes"
    elif {"integer", "number"} & set(kinds) and isinstance(error.instance, str):
        try:
            float(error.instance)
            hint = "; remove the quotes"
        except ValueError:
            pass
    return f"{_name(tuple(error.absolute_path))} must be {' or '.join(words)}, not {_describe(error.instance)}{hint}"


def _problems(error: ValidationError) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    v = str(error.validator)
    instance: Any = error.instance  # the checked data: JSON values, never Unset here
    value: Any = error.validator_value
    if v == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extras = [k for k in instance if k not in schema.get("properties", {})]
        for key in extras:
            yield Problem(path + (key,), "unknown_key", f"unknown key `{key}`{did_you_mean(key, allowed)}", at_key=True)
        return
    if v in ("anyOf", "oneOf"):
        # If the value has the right shape for exactly one branch, that
        # branch's own errors say more than "must be A or B".
        branches: dict[str | int, list[ValidationError]] = {}
        for sub in error.context or ():
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        shaped = [
            errs for errs in branches.values()
            if not any(e.validator in ("type", "const", "enum") and not e.relative_path for e in errs)
        ]
        # ... unless the branch only says the value itself is wrong: then the
        # schema's own words name every choice (``180d, or `ever```).
        if (len(shaped) == 1 and "x-message" in schema and all(not e.relative_path for e in shaped[0])
                and any(e.validator != "format" for e in shaped[0])):
            shaped = []
        if len(shaped) == 1:
            for sub in shaped[0]:
                yield from _problems(sub)
            return
        if "x-message" in schema:
            yield Problem(path, "invalid", f"{_name(path)} {schema['x-message']}")
            return
        inner = best_match(error.context) if error.context else None
        if inner is not None:
            yield from _problems(inner)
            return
    if v == "format" and error.cause is not None:
        yield Problem(path, "format", str(error.cause))
        return
    if "x-message" in schema and v in ("pattern", "type", "minProperties", "enum", "format"):
        yield Problem(path, v, f"{_name(path)} {schema['x-message']}")
        return
    if v == "required":
        missing = [k for k in value if k not in instance]
        for key in missing:
            yield Problem(path, "missing", f"missing required key `{key}`")
        return
    if v == "type":
        yield Problem(path, "type", _type_message(error))
        return
    if v == "enum":
        choices = [str(c) for c in value]
        yield Problem(
            path,
            "enum",
            f"{_name(path)} is `{instance}`, which is not one of: {', '.join(choices)}"
            f"{did_you_mean(str(instance), choices)}",
        )
        return
    if v == "const":
        yield Problem(path, "const", f"{_name(path)} must be `{value}`")
        return
    messages = {
        "minItems": lambda: f"{_name(path)} needs at least {value} item(s)",
        "maxItems": lambda: f"{_name(path)} allows at most {value} item(s)",
        "minLength": lambda: f"{_name(path)} must not be empty" if value == 1
        else f"{_name(path)} must be at least {value} characters",
        "maxLength": lambda: f"{_name(path)} must be at most {value} characters",
        "minimum": lambda: f"{_name(path)} must be at least {value}",
        "maximum": lambda: f"{_name(path)} must be at most {value}",
        "exclusiveMinimum": lambda: f"{_name(path)} must be greater than {value}",
        "exclusiveMaximum": lambda: f"{_name(path)} must be less than {value}",
        "minProperties": lambda: f"{_name(path)} must not be empty",
        "maxProperties": lambda: f"{_name(path)} takes exactly one of: {', '.join(schema.get('properties', {}))}"
        if value == 1 else f"{_name(path)} has too many keys",
        "uniqueItems": lambda: f"{_name(path)} lists the same item twice",
        "pattern": lambda: f"{_name(path)} `{instance}` does not match `{value}`",
    }
    if v in messages:
        yield Problem(path, v, messages[v]())
        return
    yield Problem(path, v, f"{_name(path)}: {error.message}")


def schema_problems(kind: str, data: Any) -> list[Problem]:
    """All schema problems of one definition, most specific first, deduplicated."""
    seen: set[tuple] = set()
    out: list[Problem] = []
    for error in validator(kind).iter_errors(data):
        for problem in _problems(error):
            key = (problem.path, problem.message)
            if key not in seen:
                seen.add(key)
                out.append(problem)
    # a format check (e.g. durations) says more than the pattern beside it
    formatted = {p.path for p in out if p.code == "format"}
    return [p for p in out if not (p.code == "pattern" and p.path in formatted)]
