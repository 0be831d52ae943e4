"""The data-in part of the OpenAPI document (``/api/v1/customers``,
``/api/v1/events``, see :mod:`web.api_customers`). Kept beside
:mod:`web.openapi` like :mod:`web.openapi_messages`."""

from __future__ import annotations

from typing import Any

from engine.conditions.customer_fields import CONSENT_CHANNELS

_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_DATE = {"type": ["string", "null"], "format": "date"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def batch_item(item: str) -> dict[str, Any]:
    """A batch's item: any JSON value, checked one by one. Each should be an
    ``item``; one that is not is answered in its own result, and the batch
    goes on, so the batch as a whole refuses no item."""
    return {"description": f"a {item} (#/components/schemas/{item}); an item that is not valid is answered "
                           "in its own result (status `error`) and the other items are stored"}


def _batch_of(item: str) -> dict[str, Any]:
    from .api_customers import BATCH_LIMIT

    return {"type": "object", "properties": {"items": {"type": "array", "items": batch_item(item), "minItems": 1,
                                                       "maxItems": BATCH_LIMIT}},
            "required": ["items"], "additionalProperties": False}


def datain_schemas() -> dict[str, Any]:
    consent_in = {"oneOf": [{"type": "boolean"}, {
        "type": "object", "properties": {"granted": {"type": "boolean"}, "source": {"type": "string", "maxLength": 64}},
        "required": ["granted"], "additionalProperties": False}]}
    identity = {
        "external_id": {"type": "string", "maxLength": 128, "description": "your customer id (matched first)"},
        "member_no": {"type": "string", "maxLength": 64},
        "wecom_userid": {"type": "string", "maxLength": 128, "description": "WeCom external userid"},
        "phone": {"type": "string", "description": "normalised: spaces/dashes ignored, +86 dropped"},
        "email": {"type": "string", "description": "compared case-insensitively"},
    }
    customer_in = {
        "type": "object",
        "description": "Identities (at least one for POST), profile fields, tags to add or remove, consent per "
                       "channel, custom attributes (merged). In PATCH, null clears a profile field.",
        "properties": {
            **identity,
            "name": {"type": ["string", "null"], "maxLength": 255},
            "gender": {"type": ["string", "null"], "maxLength": 16},
            "city": {"type": ["string", "null"], "maxLength": 128},
            "level": {"type": ["string", "null"], "maxLength": 32},
            "birthday": _DATE, "contract_end": _DATE,
            "registered_at": {"type": ["string", "null"], "description": "local time or with an offset; default: now"},
            "timezone": {"type": ["string", "null"], "description": "IANA zone, e.g. Asia/Shanghai"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 64}},
            "remove_tags": {"type": "array", "items": {"type": "string", "maxLength": 64}},
            "consent": {"type": "object", "properties": {ch: consent_in for ch in CONSENT_CHANNELS},
                        "additionalProperties": False},
            "attrs": {"type": "object"},
            "account_manager": {"type": ["string", "null"], "maxLength": 128,
                                "description": "user name of the account manager (their follow-up tasks go to "
                                               "them); null clears it in PATCH"},
            "store": {"type": ["string", "null"], "maxLength": 64,
                      "description": "the customer's store (kept as attrs.store; role tasks go to that store's "
                                     "staff); null clears it in PATCH"},
        },
        "additionalProperties": False,
    }
    consent_out = {"type": "object", "properties": {"granted": {"type": "boolean"}, "source": _TEXT,
                                                    "updated_at": _TIME}, "required": ["granted"]}
    customer = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "status": {"enum": ["created", "updated"], "description": "only in answers to POST /customers"},
            "external_id": _TEXT, "member_no": _TEXT,
            "wecom_userids": {"type": "array", "items": {"type": "string"}},
            "phone": _TEXT, "email": _TEXT, "name": _TEXT, "gender": _TEXT, "city": _TEXT, "level": _TEXT,
            "birthday": _DATE, "registered_at": _TIME, "contract_end": _DATE, "timezone": _TEXT,
            "tags": {"type": "array", "items": {"type": "string"}},
            "consent": {"type": "object", "additionalProperties": consent_out},
            "attrs": {"type": "object"},
            "account_manager": _TEXT, "store": _TEXT,
            "order_count": {"type": "integer"},
            "total_spent": {"type": "string", "description": "decimal, 2 places"},
            "last_purchase_at": _TIME, "rfm_segment": _TEXT,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "external_id", "member_no", "wecom_userids", "phone", "email", "tags", "consent",
                     "order_count", "total_spent", "created_at", "updated_at"],
    }
    field_error = {"type": "object", "properties": {"field": {"type": "string"}, "code": {"type": "string"},
                                                    "message": {"type": "string"}},
                   "required": ["field", "code", "message"]}
    customer_result = {"type": "object", "properties": {
        "index": {"type": "integer"}, "status": {"enum": ["created", "updated", "error"]},
        "id": {"type": ["integer", "null"]}, "errors": {"type": "array", "items": field_error}},
        "required": ["index", "status", "id"]}
    counts = {"type": "object", "additionalProperties": {"type": "integer"}, "description": "items per status"}
    event_in = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"^custom\.", "examples": ["custom.community.joined"]},
            "customer_id": {"type": "integer", "minimum": 1},
            "customer": {"type": "object", "properties": identity, "additionalProperties": False,
                         "description": "an identity, when the customer id is not known"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200,
                                "description": "unique; a retry with the same key returns the first event"},
            "data": {"type": "object", "description": "what rules' `when:` test, e.g. {\"streak\": 7}"},
            "occurred_at": {"type": "string", "format": "date-time"},
        },
        "required": ["name", "idempotency_key"],
        "additionalProperties": False,
    }
    event_result: dict[str, Any] = {"type": "object", "properties": {
        "status": {"enum": ["created", "duplicate", "error"]}, "id": {"type": ["integer", "null"]},
        "customer_id": {"type": ["integer", "null"]}, "name": _TEXT,
        "warning": {"type": "string", "description": "no published rule listens to this name (did you mean …)"},
        "errors": {"type": "array", "items": field_error}},
        "required": ["status", "id", "customer_id", "name"]}
    event_batch_result = {**event_result, "properties": {**event_result["properties"], "index": {"type": "integer"}},
                          "required": ["index", *event_result["required"]]}
    return {
        "CustomerIn": customer_in,
        "CustomerBatch": _batch_of("CustomerIn"),
        "Customer": customer,
        "CustomerBatchResult": {"type": "object", "properties": {
            "results": {"type": "array", "items": customer_result}, "counts": counts}, "required": ["results", "counts"]},
        "CustomerMerge": {"type": "object", "properties": {"from": {"type": "integer", "minimum": 1}},
                          "required": ["from"]},
        "CustomerMerged": {"type": "object", "properties": {
            "id": {"type": "integer"}, "merged": {"type": "integer"},
            "moved": {"type": "object", "additionalProperties": {"type": "integer"}},
            "customer": _ref("Customer")}, "required": ["id", "merged", "moved", "customer"]},
        "EventIn": event_in,
        "EventBatch": _batch_of("EventIn"),
        "EventResult": event_result,
        "EventBatchResult": {"type": "object", "properties": {
            "results": {"type": "array", "items": event_batch_result}, "counts": counts},
            "required": ["results", "counts"]},
    }


def datain_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    customer_id = {"name": "customer_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    conflict = _json(_ref("ValidationErrors"), "`identity_conflict`: an identity belongs to another customer "
                                               "(merge them first)")
    too_large = _json(_ref("Error"), "`batch_too_large`: more than 1,000 items")

    def body(*refs: str) -> dict[str, Any]:
        schema = _ref(refs[0]) if len(refs) == 1 else {"oneOf": [_ref(r) for r in refs]}
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    return {
        "/customers": {"post": {
            "operationId": "upsert_customers",
            "summary": "Create or update a customer by identity, or up to 1,000 in a batch (integration role)",
            "description": "A customer seen for the first time emits `customer.registered`.",
            "tags": ["customers"],
            "requestBody": body("CustomerIn", "CustomerBatch"),
            "responses": {
                "201": _json(_ref("Customer"), "Created"),
                "200": _json({"oneOf": [_ref("Customer"), _ref("CustomerBatchResult")]},
                             "Updated (one customer), or a batch's result per item"),
                **errors(400, 401, 403, 422), "409": conflict, "413": too_large,
            },
        }},
        "/customers/{customer_id}": {
            "parameters": [customer_id],
            "get": {"operationId": "get_customer", "summary": "One customer", "tags": ["customers"],
                    "responses": {"200": _json(_ref("Customer"), "The customer"), **errors(401, 403, 404)}},
            "patch": {"operationId": "patch_customer", "summary": "Change some fields of a customer",
                      "tags": ["customers"], "requestBody": body("CustomerIn"),
                      "responses": {"200": _json(_ref("Customer"), "The changed customer"),
                                    **errors(400, 401, 403, 404, 413, 422), "409": conflict}},
        },
        "/customers/{customer_id}/merge": {"post": {
            "operationId": "merge_customers",
            "summary": "Merge another customer into this one (orders, coupons, journeys, messages, feedback, "
                       "consents, tags move; audited)",
            "tags": ["customers"], "parameters": [customer_id], "requestBody": body("CustomerMerge"),
            "responses": {"200": _json(_ref("CustomerMerged"), "Merged"), **errors(400, 401, 403, 404, 422),
                          "409": _json(_ref("Error"), "`merge_conflict`: both have a row that exists once per "
                                                      "customer")},
        }},
        "/events": {"post": {
            "operationId": "post_events",
            "summary": "A custom event (custom.*) for a customer, or up to 1,000 in a batch (integration role)",
            "tags": ["events"],
            "requestBody": body("EventIn", "EventBatch"),
            "responses": {
                "201": _json(_ref("EventResult"), "Stored"),
                "200": _json({"oneOf": [_ref("EventResult"), _ref("EventBatchResult")]},
                             "A repeat of an idempotency key (the first event), or a batch's result per item"),
                **errors(400, 401, 403, 422),
                "409": _json(_ref("ValidationErrors"), "`idempotency_conflict`: the key was used for another event"),
                "413": too_large,
            },
        }},
    }
