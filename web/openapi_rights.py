"""The customer-rights and audit part of the OpenAPI document
(``/api/v1/customers/<id>/export``, ``/api/v1/customers/<id>/erase``,
``/api/v1/audit``, see :mod:`web.rights`). Kept beside :mod:`web.openapi`
like :mod:`web.openapi_datain`."""

from __future__ import annotations

from typing import Any

from engine.audit_log import MAX_PAGE, MAX_PER_PAGE, PER_PAGE


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def rights_schemas() -> dict[str, Any]:
    entry = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time", "description": "UTC"},
            "at_local": {"type": "string", "description": "`YYYY-MM-DD HH:MM` in the business time zone"},
            "actor": {"type": ["string", "null"]},
            "action": {"type": "string", "description": "e.g. `login_failed`, `customer.erased`"},
            "entity_type": {"type": "string"},
            "entity_id": {"type": ["string", "null"]},
            "diff": {"type": ["object", "null"]},
        },
        "required": ["id", "at", "at_local", "actor", "action", "entity_type", "entity_id", "diff"],
        "additionalProperties": False,
    }
    return {
        "AuditEntry": entry,
        "AuditPage": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": _ref("AuditEntry")},
                           "total": {"type": "integer", "minimum": 0}, "page": {"type": "integer", "minimum": 1},
                           "per_page": {"type": "integer", "minimum": 1}, "pages": {"type": "integer", "minimum": 1}},
            "required": ["items", "total", "page", "per_page", "pages"], "additionalProperties": False,
        },
        "CustomerErased": {
            "type": "object",
            "properties": {"customer_id": {"type": "integer"}, "erased": {"const": True},
                           "already": {"type": "boolean", "description": "erased before; nothing was done"},
                           "touched": {"type": "object", "additionalProperties": {"type": "integer"},
                                       "description": "rows changed per table"}},
            "required": ["customer_id", "erased", "already", "touched"], "additionalProperties": False,
        },
    }


def rights_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    customer_id = {"name": "customer_id", "in": "path", "required": True, "schema": {"type": "integer"}}

    def text(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": {"type": "string", "maxLength": 256}}

    def day(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": {"type": "string", "format": "date"}}

    return {
        "/customers/{customer_id}/export": {"get": {
            "operationId": "export_customer",
            "summary": "Everything held about one customer, as a zip of JSON and CSV (PIPL; admin; audited)",
            "description": "`customer.json` holds every table's rows about the customer (profile, identities, "
                           "consents, tags, orders, coupons, redemption attempts, journeys, messages with "
                           "attempts and receipts, click links and clicks, feedback, follow-up tasks, events); "
                           "one CSV per table beside it.",
            "tags": ["customers"], "parameters": [customer_id],
            "responses": {"200": {"description": "The zip (an attachment)", "content": {"application/zip": {
                "schema": {"type": "string", "contentMediaType": "application/zip"}}}},
                **errors(401, 403, 404)},
        }},
        "/customers/{customer_id}/erase": {"post": {
            "operationId": "erase_customer",
            "summary": "Erase a customer's personal data (PIPL; admin; audited; cannot be undone)",
            "description": "Identities, profile and free text (feedback comments, task notes, message bodies "
                           "and recipients) are removed; consent decisions stay as proof (channel, time, "
                           "source) and orders and totals stay, all without identity; no rule enters the "
                           "customer again. A repeat answers 200 with `already: true`.",
            "tags": ["customers"], "parameters": [customer_id],
            "responses": {"200": _json(_ref("CustomerErased"), "Erased"), **errors(401, 403, 404)},
        }},
        "/audit": {"get": {
            "operationId": "list_audit",
            "summary": "The audit trail, newest first (admin): sign-ins, exports, erasures, account and role "
                       "changes, publishes, record and task changes",
            "tags": ["audit"],
            "parameters": [
                text("actor", "who acted (exact)"), text("action", "the action (exact), e.g. `login_failed`"),
                text("target", "`type` or `type:id`, e.g. `customer:12`"),
                day("from", "first day, in the business time zone"),
                day("to", "last day (inclusive), in the business time zone"),
                {"name": "page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
                {"name": "per_page", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": PER_PAGE}},
            ],
            "responses": {"200": _json(_ref("AuditPage"), "One page of entries"), **errors(401, 403, 422)},
        }},
    }
