"""The OpenAPI 3.1 document of the REST API, generated from the published forms.

Each form's payload schema (``engine.forms.schema.form_json_schema``, JSON
Schema Draft 2020-12, which is OpenAPI 3.1's schema dialect) becomes a
component; each form gets its own literal path, so clients and code
generators see typed operations per form.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.definitions.specs import FormSpec
from engine.forms.schema import form_json_schema

from .openapi_followups import followups_paths, followups_schemas
from .openapi_datain import datain_paths, datain_schemas
from .openapi_coupons import coupons_paths, coupons_schemas
from .openapi_messages import messages_paths, messages_schemas
from .openapi_orders import orders_paths, orders_schemas
from .openapi_rights import rights_paths, rights_schemas

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {400: "Malformed request (JSON, filter, sort)", 401: "Missing or invalid bearer token",
             403: "The token's user lacks the role", 404: "Unknown form or record",
             409: "The record changed since the given version", 413: "Body too large",
             422: "Invalid data: field-level errors",
             429: "Too many invalid tokens from this address: wait the seconds in Retry-After"}
    out: dict[str, Any] = {}
    # Every route that checks a token may answer 429 (the address throttle, web/api.py).
    for code in (*codes, 429) if 401 in codes else codes:
        out[str(code)] = _json(_ref("ValidationErrors" if code == 422 else "Error"), texts[code])
    return out


def _record_schema(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "form_id": {"type": "string"},
            "form_version": {"type": "integer"},
            "data": data,
            "created_by": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "version": {"type": "integer", "description": "Optimistic-locking version; send it as If-Match"},
            "status": {"type": "string"},
        },
        "required": ["id", "form_id", "form_version", "data", "created_at", "updated_at", "version", "status"],
    }


#: Every operation takes it: the language of messages and labels in the answer.
LANG_PARAMETER: dict[str, Any] = {
    "name": "lang", "in": "query", "required": False, "schema": {"type": "string"},
    "description": "zh or en: the language of error messages and labels (else Accept-Language, else the "
                   "installation's default)"}

LIST_PARAMETERS: list[dict[str, Any]] = [
    {"name": "where", "in": "query", "required": False, "schema": {"type": "string"},
     "description": 'A condition as JSON, e.g. {"budget": {"gt": 10000}}'},
    {"name": "sort", "in": "query", "required": False, "schema": {"type": "string", "default": "-created_at"},
     "description": "A field, created_at, updated_at or id; prefix - for descending"},
    {"name": "page", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "default": 1}},
    {"name": "per_page", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}},
    {"name": "mine", "in": "query", "required": False, "schema": {"type": "boolean"},
     "description": "Only records the caller submitted"},
    {"name": "q", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A keyword one of the record's text fields contains (case-insensitive for ASCII; % and _ "
                    "are taken literally; only the first 100 characters count)"},
]


def field_filters(form: FormSpec) -> list[dict[str, Any]]:
    """The list route's ``field=value`` filters of ``form``: one query
    parameter per field a condition can test (``web.access.list_query``)."""
    from .access import RESERVED_ARGS

    return [{"name": f.key, "in": "query", "required": False, "schema": {"type": "string"},
             "description": f"Only records whose `{f.key}` is this value ({f.label or f.key}; a multiselect: "
                            "contains it)"}
            for f in form.fields if f.kind is not None and f.key not in RESERVED_ARGS and not f.key.startswith("_")]


def _workflow_schemas() -> dict[str, Any]:
    """Tasks, approval instances and the action body."""
    from .approvals import BULK_ACTIONS, MAX_COMMENT  # the route's own limits, so the two never disagree

    when = {"type": "string", "format": "date-time"}
    maybe_when = {"type": ["string", "null"], "format": "date-time"}
    task = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "instance_id": {"type": "integer"}, "record_id": {"type": "integer"},
            "form_id": {"type": "string"}, "step_id": {"type": "string"}, "step_title": {"type": ["string", "null"]},
            "status": {"type": "string", "description": "open, or how the task was closed"},
            "due_at": maybe_when, "overdue": {"type": "boolean"},
            "version": {"type": "integer", "description": "Send it back as `version` to act only on this state"},
            "created_at": when, "assignee": {"type": "string"},
        },
        "required": ["id", "instance_id", "record_id", "step_id", "status", "version", "assignee"],
    }
    history = {
        "type": "object",
        "properties": {"at": when, "actor": {"type": ["string", "null"]}, "action": {"type": "string"},
                       "step_id": {"type": ["string", "null"]}, "comment": {"type": ["string", "null"]}},
        "required": ["at", "action"],
    }
    instance = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"}, "record_id": {"type": "integer"}, "workflow_id": {"type": "string"},
            "workflow_version": {"type": "integer", "description": "The definition version it runs on to its end"},
            "status": {"type": "string", "description": "running, approved, rejected, returned, withdrawn"},
            "current_steps": {"type": "array", "items": {"type": "string"}},
            "tasks": {"type": "array", "items": _ref("Task")},
            "history": {"type": "array", "items": _ref("HistoryEntry")},
        },
        "required": ["id", "record_id", "workflow_id", "workflow_version", "status", "current_steps", "history"],
    }
    conflict = {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "enum": ["task_closed", "stale_task"]}, "message": {"type": "string"},
            "current": _ref("WorkflowInstance")}, "required": ["code", "message"]}},
        "required": ["error"],
    }
    action = {
        "type": "object",
        "properties": {
            "comment": {"type": ["string", "null"], "maxLength": MAX_COMMENT},
            "target": {"type": ["string", "null"], "description": "User name: whom to transfer to or add"},
            "version": {"type": ["integer", "null"], "description": "The task version last read; a change gives 409"},
        },
        "additionalProperties": False,
    }
    page = {"type": "object",
            "properties": {"items": {"type": "array", "items": _ref("Task")},
                           "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                                      "description": "open, overdue, done"},
                           "followups": {"type": "array", "items": _ref("RuleTask"),
                                         "description": "Follow-up tasks from rules (none with `form`)"}},
            "required": ["items", "counts"]}
    bulk = {"type": "object",
            "properties": {"task_ids": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                        "minItems": 1, "maxItems": 200},
                           "action": {"type": "string", "enum": list(BULK_ACTIONS), "default": BULK_ACTIONS[0]},
                           "comment": {"type": ["string", "null"], "maxLength": MAX_COMMENT}},
            "required": ["task_ids"], "additionalProperties": False}
    bulk_result = {"type": "object",
                   "properties": {"results": {"type": "array", "items": {
                       "type": "object",
                       "properties": {"task_id": {"type": "integer"}, "ok": {"type": "boolean"},
                                      "code": {"type": ["string", "null"]}, "message": {"type": ["string", "null"]},
                                      "status": {"type": ["string", "null"]},
                                      "record_id": {"type": ["integer", "null"]}},
                       "required": ["task_id", "ok"]}},
                                  "done": {"type": "integer"}, "failed": {"type": "integer"}},
                   "required": ["results", "done", "failed"]}
    return {"Task": task, "HistoryEntry": history, "WorkflowInstance": instance, "TaskConflict": conflict,
            "TaskAction": action, "TaskList": page, "TaskBulk": bulk, "TaskBulkResult": bulk_result}


#: What each task action does, for the document; one per ``web.approvals.ACTIONS``.
ACTION_SUMMARIES = {
    "approve": "Approve a task",
    "reject": "Reject a task (驳回); `comment` is required",
    "return": "Return the request to its submitter for edits (退回); `comment` is required",
    "transfer": "Transfer a task to another user (`target`, 转交)",
    "add_approver": "Add an approver to the task's step (`target`, 加签)",
    "comment": "Comment on a task without deciding it (评论); `comment` is required",
}


def _workflow_paths() -> dict[str, Any]:
    from .approvals import ACTIONS, REASON_ACTIONS, TASK_FILTERS

    paths: dict[str, Any] = {
        "/tasks": {"get": {
            "operationId": "list_tasks",
            "summary": "The caller's approval tasks, overdue first",
            "tags": ["approvals"],
            "parameters": [
                {"name": "status", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(TASK_FILTERS), "default": TASK_FILTERS[0]}},
                {"name": "form", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "Only tasks on records of this form"},
            ],
            "responses": {"200": _json(_ref("TaskList"), "Tasks and counts"), **_errors(400, 401)},
        }},
        "/records/{record_id}/workflow": {"get": {
            "operationId": "get_record_workflow",
            "summary": "Where a record's approval stands: status, current steps, tasks, history",
            "tags": ["approvals"],
            "parameters": [{"name": "record_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _json(_ref("WorkflowInstance"), "The approval instance"),
                          **_errors(401, 403, 404)},
        }},
    }
    paths["/tasks/bulk"] = {"post": {
        "operationId": "act_on_tasks",
        "summary": "批量审批: approve or reject many of the caller's open tasks in one transaction",
        "description": "Each task is its own transition; a task that cannot be acted on is reported in its "
                       "result (`ok: false` with a code) without undoing the others.",
        "tags": ["approvals"],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TaskBulk")}}},
        "responses": {"200": _json(_ref("TaskBulkResult"), "One result per task, in order"), **_errors(400, 401)},
    }}
    for action in ACTIONS:
        paths[f"/tasks/{{task_id}}/{action}"] = {"post": {
            "operationId": f"{action}_task",
            "summary": ACTION_SUMMARIES[action],
            "tags": ["approvals"],
            "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("TaskAction")}}},
            "responses": {
                "200": _json(_ref("WorkflowInstance"), "The instance after the action"),
                **_errors(400, 401),
                "403": _json(_ref("Error"), "The task is not assigned to the caller"),
                "404": _json(_ref("Error"), "No such task"),
                "409": _json(_ref("TaskConflict"), "The task was already acted on or changed; `current` is the state"),
                "422": _json(_ref("Error"), "The step does not allow this action, or `target` is not a user, or "
                                               "`target` may not hold this task (separation of duties: "
                                               "`target_is_submitter`, `target_already_decided`)"),
            },
        }}
        if action in REASON_ACTIONS or action == "comment":  # no comment → a field error on `comment`
            paths[f"/tasks/{{task_id}}/{action}"]["post"]["responses"]["422"] = _json(
                {"oneOf": [_ref("Error"), _ref("ValidationErrors")]},
                "`comment` is required (the reason; field error `required`), or the step does not allow this action")
    return paths


def openapi_document(forms: Iterable[FormSpec], *, server_url: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``forms`` served under ``server_url``."""
    forms = sorted(forms, key=lambda f: f.id)
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}, "required": ["code", "message"]}},
            "required": ["error"],
        },
        "ValidationErrors": {
            "type": "object",
            "properties": {"errors": {"type": "array", "items": {
                "type": "object",
                "properties": {"field": {"type": "string", "description": "budget, materials[0].qty; empty: the body"},
                               "code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "code", "message"]}}},
            "required": ["errors"],
        },
        "Record": _record_schema({"type": "object"}),
    }
    paths: dict[str, Any] = {}
    for form in forms:
        schema = form_json_schema(form)
        schema.pop("$schema", None)
        schema.pop("$id", None)
        schemas[form.id] = schema
        schemas[f"{form.id}_record"] = _record_schema(_ref(form.id))
        schemas[f"{form.id}_page"] = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": _ref(f"{form.id}_record")},
                           "total": {"type": "integer"}, "page": {"type": "integer"},
                           "per_page": {"type": "integer"}, "pages": {"type": "integer"}},
            "required": ["items", "total", "page", "per_page", "pages"],
        }
        title = form.title_en or form.title
        paths[f"/forms/{form.id}/records"] = {
            "post": {
                "operationId": f"create_{form.id}",
                "summary": f"Submit a {title} record",
                "tags": [form.id],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(form.id)}}},
                "responses": {"201": _json(_ref(f"{form.id}_record"), "Created"),
                              **_errors(400, 401, 403, 404, 413, 422)},
            },
            "get": {
                "operationId": f"list_{form.id}",
                "summary": f"List {title} records",
                "tags": [form.id],
                "parameters": [*LIST_PARAMETERS, *field_filters(form)],
                "responses": {"200": _json(_ref(f"{form.id}_page"), "One page of records"),
                              **_errors(400, 401, 403, 404)},
            },
        }
    record_id = {"name": "record_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    paths["/records/{record_id}"] = {
        "parameters": [record_id],
        "get": {
            "operationId": "get_record",
            "summary": "Read one record",
            "responses": {"200": _json(_ref("Record"), "The record"), **_errors(401, 403, 404)},
        },
        "patch": {
            "operationId": "update_record",
            "summary": "Change some fields of a record",
            "parameters": [{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "The version last read; a later change gives 409"},
                           {"name": "version", "in": "query", "required": False, "schema": {"type": "integer"},
                            "description": "The same as If-Match, for clients that cannot set headers"}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _json(_ref("Record"), "The updated record"),
                          **_errors(400, 401, 403, 404, 409, 413, 422)},
        },
    }
    paths["/records/{record_id}/files/{field}/{file_id}"] = {"get": {
        "operationId": "download_file",
        "summary": "An uploaded file of a record (its readers, submitter and approvers; others get 404)",
        "parameters": [record_id,
                       {"name": "field", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The file, as an attachment with its original name",
                              "content": {"application/octet-stream": {"schema": {
                                  "type": "string", "contentMediaType": "application/octet-stream"}}}},
                      **_errors(401, 404)},
    }}
    schemas.update(_workflow_schemas())
    paths.update(_workflow_paths())
    schemas.update(messages_schemas())
    paths.update(messages_paths(_errors))
    schemas.update(followups_schemas())
    paths.update(followups_paths(_errors))
    schemas.update(datain_schemas())
    paths.update(datain_paths(_errors))
    schemas.update(orders_schemas()), paths.update(orders_paths(_errors))
    schemas.update(coupons_schemas())
    paths.update(coupons_paths(_errors))
    from .openapi_ops import ops_paths, ops_schemas; schemas.update(ops_schemas()); paths.update(ops_paths())  # noqa: E702 (issue 17)
    schemas.update(rights_schemas()), paths.update(rights_paths(_errors))  # customer rights, audit (issue 16)
    from .openapi_points import points_paths, points_schemas  # loyalty points (issue 13)

    schemas.update(points_schemas()), paths.update(points_paths(_errors))
    from .openapi_campaigns import campaigns_paths, campaigns_schemas  # campaigns and KPIs (issue 14)

    schemas.update(campaigns_schemas()), paths.update(campaigns_paths(_errors))
    paths["/openapi.json"] = {
        "get": {"operationId": "openapi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}},
    }
    for item in paths.values():  # every answer's language (web.i18n.get_locale): errors, labels
        for method, op in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                op["parameters"] = [*op.get("parameters", []), LANG_PARAMETER]
    return {
        "openapi": "3.1.0",
        "info": {"title": "promoflow API", "version": version,
                 "description": "Records of the published forms. Authenticate with `Authorization: Bearer <token>` "
                                "(create one with `promoflow tokens create USER`)."},
        "jsonSchemaDialect": DIALECT,
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
