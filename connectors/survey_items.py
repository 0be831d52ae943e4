"""The generic survey item format shared by the survey webhook and the pull
connector, and its validation with field errors.

An item is a JSON object::

    {"id": "resp_123",                 # required: the answer's id at the source
     "customer_id": 42,                # one of customer_id / external_id / phone / email
     "external_id": "C0042", "phone": "+8613800000000", "email": "a@b.cn",
     "campaign": "spring_sale",        # optional: else the message's rule
     "message_id": 1234,               # optional: our outbox id (echoed from the link)
     "score": 9,                       # optional: NPS 0–10
     "comment": "物流太慢",             # optional text
     "answers": {...},                 # optional: anything else, kept as is
     "answered_at": "2025-03-01T10:00:00+08:00"}   # optional ISO 8601
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engine.ports import FeedbackItem

__all__ = ["FieldProblem", "InvalidFeedbackBody", "parse_item", "parse_items"]

FieldProblem = dict[str, str]

_MAX_TEXT = 4000
_KEYS = ("id", "customer_id", "external_id", "phone", "email", "campaign", "message_id", "score", "comment",
         "answers", "answered_at")


_MAX_INT32 = 2**31 - 1   # customers.id
_MAX_INT64 = 2**63 - 1   # outbox.id


def _id_in_range(value: Any, top: int) -> bool:
    """A database id: an int (not a bool) the column can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= top


def _problem(field: str, code: str, message: str) -> FieldProblem:
    return {"field": field, "code": code, "message": message}


def parse_item(raw: Any, prefix: str = "") -> tuple[FeedbackItem | None, list[FieldProblem]]:
    """A ``survey`` :class:`FeedbackItem` from one item, or every problem with it."""
    if not isinstance(raw, Mapping):
        return None, [_problem(prefix or "$", "type", "must be a JSON object")]
    errors: list[FieldProblem] = []

    def at(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    item_id = raw.get("id")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or str(item_id).strip() == "" \
            or len(str(item_id)) > 128:
        errors.append(_problem(at("id"), "required", "must be a non-empty string of at most 128 characters"))
    customer_id = raw.get("customer_id")
    if customer_id is not None and not _id_in_range(customer_id, _MAX_INT32):
        errors.append(_problem(at("customer_id"), "type", f"must be an integer from 1 to {_MAX_INT32}"))
    for key, limit in (("external_id", 128), ("phone", 32), ("email", 255), ("campaign", 128)):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            errors.append(_problem(at(key), "type", f"must be a string of at most {limit} characters"))
    if all(raw.get(k) in (None, "") for k in ("customer_id", "external_id", "phone", "email")):
        errors.append(_problem(at("customer_id"), "required",
                               "name the customer: customer_id, external_id, phone or email"))
    message_id = raw.get("message_id")
    if message_id is not None and not _id_in_range(message_id, _MAX_INT64):
        errors.append(_problem(at("message_id"), "type", f"must be an integer from 1 to {_MAX_INT64}"))
    score = raw.get("score")
    if score is not None and (not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 10):
        errors.append(_problem(at("score"), "range", "must be an integer from 0 to 10"))
    comment = raw.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > _MAX_TEXT):
        errors.append(_problem(at("comment"), "type", f"must be text of at most {_MAX_TEXT} characters"))
    if score is None and not comment:
        errors.append(_problem(at("score"), "required", "give a score, a comment or both"))
    answers = raw.get("answers")
    if answers is not None and not isinstance(answers, Mapping):
        errors.append(_problem(at("answers"), "type", "must be a JSON object"))
    occurred: datetime | None = None
    answered = raw.get("answered_at")
    if answered is not None:
        try:
            occurred = datetime.fromisoformat(str(answered))
            occurred = occurred.replace(tzinfo=UTC) if occurred.tzinfo is None else occurred.astimezone(UTC)
        except (ValueError, OverflowError):  # OverflowError: 0001-01-01 at +14:00 is before year 1 in UTC
            errors.append(_problem(at("answered_at"), "format", "must be an ISO 8601 date-time"))
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        errors.append(_problem(at(unknown[0]), "unknown", f"unknown field; known: {', '.join(_KEYS)}"))
    if errors:
        return None, errors
    data = {k: raw.get(k) for k in ("customer_id", "external_id", "phone", "email", "campaign", "score", "answers")
            if raw.get(k) is not None}
    return FeedbackItem("survey", provider_id=str(item_id), message_id=None if message_id is None else str(message_id),
                        sender=None, text=comment, occurred_at=occurred, data=data), []


def parse_items(raw: Any) -> tuple[list[FeedbackItem], list[FieldProblem]]:
    """A body holding one item, or ``{"items": [...]}``; all problems at once."""
    if isinstance(raw, Mapping) and "items" in raw:
        items = raw["items"]
        if not isinstance(items, list) or not items:
            return [], [_problem("items", "type", "must be a non-empty list")]
        out, errors = [], []
        for i, one in enumerate(items):
            item, problems = parse_item(one, f"items[{i}]")
            errors.extend(problems)
            if item is not None:
                out.append(item)
        return (out, []) if not errors else ([], errors)
    item, problems = parse_item(raw)
    return ([item] if item else []), problems


class InvalidFeedbackBody(ValueError):
    """A verified body that is not acceptable survey data; ``errors`` lists
    every field problem (``field``, ``code``, ``message``). The web layer
    answers 422 with them."""

    def __init__(self, errors: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]))
        self.errors = errors
