"""The messages part of the OpenAPI document (``/api/v1/messages``, see
:mod:`web.messages`): what went out, its status, and a resend for dead
letters and unknown outcomes. Kept beside :mod:`web.openapi` so the forms'
document generator does not change when the messages API does."""

from __future__ import annotations

from typing import Any

_NULLABLE_TEXT = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def messages_schemas() -> dict[str, Any]:
    message = {
        "type": "object",
        "description": "One outbox message. `recipient` is masked, also in the detail; `?unmask=1` shows it whole to roles with the unmask_personal_data permission (audited).",
        "properties": {
            "id": {"type": "integer"},
            "channel": {"type": "string", "examples": ["sms", "email", "wecom"]},
            "connector": _NULLABLE_TEXT,
            "recipient": {"type": "string"},
            "subject": _NULLABLE_TEXT,
            "delivery_class": {"type": ["string", "null"], "enum": ["marketing", "transactional", None]},
            "status": {"type": "string", "description": "queued, sending, retry, sent, failed, dead, unknown …"},
            "attempts": {"type": "integer"},
            "next_attempt_at": _TIME,
            "provider_id": _NULLABLE_TEXT,
            "last_error": _NULLABLE_TEXT,
            "rule_id": _NULLABLE_TEXT,
            "template_id": _NULLABLE_TEXT,
            "customer_id": _NULLABLE_INT,
            "created_at": {"type": "string", "format": "date-time"},
            "sent_at": _TIME,
            "delivery_status": _NULLABLE_TEXT,
            "delivered_at": _TIME,
            "reconcile_checks": {"type": "integer"},
            "resendable": {"type": "boolean", "description": "a dead letter or an unknown outcome"},
            "resend_needs_confirmation": {
                "type": "boolean",
                "description": "an unknown marketing message: it may have arrived; resend only with "
                               "`confirm_duplicate: true`"},
            "attempt_history": {"type": "array", "items": {"type": "object"}},
            "receipts": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["id", "channel", "recipient", "status", "attempts", "created_at", "resendable",
                     "resend_needs_confirmation"],
    }
    page = {
        "type": "object",
        "properties": {"messages": {"type": "array", "items": _ref("Message")},
                       "total": {"type": "integer"}, "page": {"type": "integer"},
                       "page_size": {"type": "integer"},
                       "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                                  "description": "messages per status under the other filters"}},
        "required": ["messages", "total", "page", "page_size", "counts"],
    }
    resend = {"type": "object", "properties": {"confirm_duplicate": {"type": "boolean", "default": False}}}
    queued = {"type": "object", "properties": {"id": {"type": "integer"}, "status": {"const": "queued"}},
              "required": ["id", "status"]}
    return {"Message": message, "MessageList": page, "MessageResend": resend, "MessageQueued": queued}


def messages_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    from .messages import STATUSES  # the page's filter list, so the two never disagree

    def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"},
                "description": description}

    message_id = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    return {
        "/messages": {"get": {
            "operationId": "list_messages",
            "summary": "Messages sent and waiting, newest first (marketing roles and admins)",
            "tags": ["messages"],
            "parameters": [
                query("status", "Only this status", {"type": "string", "enum": list(STATUSES)}),
                query("channel", "Only this channel (sms, email, wecom …)"),
                query("rule", "Only messages of this rule"),
                query("connector", "Only messages through this connector"),
                query("from", "Created on or after this local day", {"type": "string", "format": "date"}),
                query("to", "Created on or before this local day", {"type": "string", "format": "date"}),
                query("page", "Page number, from 1", {"type": "integer", "minimum": 1, "default": 1}),
            ],
            "responses": {"200": _json(_ref("MessageList"), "One page of messages and counts per status"),
                          **errors(400, 401, 403)},
        }},
        "/messages/{message_id}": {"get": {
            "operationId": "get_message",
            "summary": "One message with its attempts and delivery receipts",
            "tags": ["messages"],
            "parameters": [message_id, query("unmask", "1: the full recipient (needs unmask_personal_data; audited)",
                                             {"type": "string", "enum": ["0", "1"]})],
            "responses": {"200": _json(_ref("Message"), "The message"), **errors(401, 403, 404)},
        }},
        "/messages/{message_id}/resend": {"post": {
            "operationId": "resend_message",
            "summary": "Queue a dead letter or an unknown outcome again",
            "tags": ["messages"],
            "parameters": [message_id],
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("MessageResend")}}},
            "responses": {
                "200": _json(_ref("MessageQueued"), "Queued for sending"),
                **errors(400, 401, 403, 404),
                "409": _json(_ref("Error"), "`needs_confirmation`: an unknown marketing message may already have "
                                            "arrived; `not_resendable`: only dead letters and unknown outcomes"),
            },
        }},
        "/messages/receipts/{connector_id}": {"post": {
            "operationId": "post_delivery_receipts",
            "summary": "A provider's delivery receipts (Aliyun, Tencent, Twilio), verified by the connector",
            "description": "Set at the provider as its status callback. Twilio signs the request; Aliyun and "
                           "Tencent carry the connector's `receipt_token` secret as `?token=`. The body is the "
                           "provider's own (JSON or form-encoded); the answer is the one the provider expects.",
            "tags": ["messages"],
            "security": [],
            "parameters": [
                {"name": "connector_id", "in": "path", "required": True, "schema": {"type": "string"}},
                query("token", "The connector's receipt token (Aliyun, Tencent)"),
            ],
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": {}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
            "responses": {
                "200": {"description": "Receipts stored (Aliyun, Tencent: their acknowledgement)",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "204": {"description": "Receipts stored (Twilio)"},
                "403": {"description": "The signature or token does not verify",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                "404": {"description": "No enabled receipt connector of that id",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                "503": {"description": "The connector is not configured (a secret is missing)",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
            },
        }},
    }
