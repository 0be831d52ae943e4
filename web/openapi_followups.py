"""The follow-up tasks part of the OpenAPI document (rules' ``create_task``,
:mod:`web.followups`): the task as listed under ``followups`` by
``GET /api/v1/tasks`` and ``POST /api/v1/tasks/{task_id}/done``. Kept beside
:mod:`web.openapi` as :mod:`web.openapi_messages` is."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TEXT = {"type": ["string", "null"]}
_INT = {"type": ["integer", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def followups_schemas() -> dict[str, Any]:
    outcome = {"type": "object", "properties": {"id": {"type": "string"}, "label": {"type": "string"},
                                                "label_en": _TEXT}, "required": ["id", "label"]}
    task = {
        "type": "object",
        "description": "A follow-up task a rule's `create_task` step opened for the assignee.",
        "properties": {
            "id": {"type": "integer"}, "kind": {"const": "rule"}, "title": {"type": "string"}, "title_en": _TEXT,
            "status": {"type": "string", "enum": ["open", "done", "cancelled"],
                       "description": "cancelled: another assignee of the same step did it"},
            "assignee": _TEXT, "due_at": _TIME, "overdue": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"}, "done_at": _TIME,
            "outcome": _TEXT, "comment": _TEXT,
            "response_seconds": {**_INT, "description": "created → done, in seconds"},
            "version": {"type": "integer", "description": "Send it back as `version` to act only on this state"},
            "customer_id": _INT, "rule_id": _TEXT, "journey_id": _INT, "reminders": {"type": "integer"},
            "escalated": {"type": "boolean"}, "origin": {"type": "string", "enum": ["assigned", "escalation"]},
            "outcomes": {"type": "array", "items": outcome},
        },
        "required": ["id", "kind", "title", "status", "assignee", "created_at", "version", "outcomes"],
    }
    done = {
        "type": "object",
        "properties": {"outcome": {"type": "string", "description": "One of the task's `outcomes` ids"},
                       "comment": {"type": ["string", "null"], "maxLength": 2000},
                       "version": {"type": ["integer", "null"], "minimum": 0}},
        "required": ["outcome"], "additionalProperties": False,
    }
    return {"RuleTask": task, "RuleTaskDone": done}


def followups_paths(errors: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return {"/tasks/{task_id}/done": {"post": {
        "operationId": "done_followup_task",
        "summary": "Mark a follow-up task done with an outcome and a comment; records the response time",
        "tags": ["tasks"],
        "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RuleTaskDone")}}},
        "responses": {
            "200": _json(_ref("RuleTask"), "The task, done"),
            **errors(401, 422),
            "403": _json(_ref("Error"), "The task is not assigned to the caller"),
            "404": _json(_ref("Error"), "No such follow-up task"),
            "409": _json(_ref("Error"), "The task is already closed, or changed since `version`"),
        },
    }}}
