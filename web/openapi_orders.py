"""The orders part of the OpenAPI document (``/api/v1/orders``, see
:mod:`web.api_orders`): orders in, one or a batch, refunds and cancellations.
Kept beside :mod:`web.openapi` like :mod:`web.openapi_messages`."""

from __future__ import annotations

from typing import Any

from engine.orders import MAX_BATCH, MAX_LINES, ORDER_STATUSES

_MONEY = {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "examples": ["128.00"]}
_MONEY_IN = {"type": ["string", "number"], "description": "an amount such as 128.50 (at most 2 decimals, ≥ 0)"}
_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

_STATUS_TEXT = ("paid (counted), partially_refunded (counted with its net amount), refunded and cancelled "
                "(not counted; net amount 0)")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def orders_schemas() -> dict[str, Any]:
    line_in = {"type": "object", "additionalProperties": False, "required": ["sku", "unit_price"],
               "properties": {"sku": {"type": "string", "maxLength": 64}, "name": {"type": "string", "maxLength": 255},
                              "quantity": {"type": "integer", "minimum": 1, "default": 1},
                              "unit_price": _MONEY_IN}}
    customer_ref = {"type": "object", "additionalProperties": False,
                    "description": "An identity of a stored customer: our id, else external id, phone, e-mail",
                    "properties": {"id": {"type": "integer"}, "external_id": {"type": "string"},
                                   "phone": {"type": "string"}, "email": {"type": "string"}}}
    order_in = {
        "type": "object",
        "additionalProperties": False,
        "description": "An order. Idempotent on (source, external_id): the same body again answers the stored "
                       "order, another body is a conflict. Name the customer by `customer_id` or `customer`; an "
                       "unknown customer is a 422 field error.",
        "required": ["source", "external_id"],
        "properties": {
            "source": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                       "description": "the system the order comes from (a till, a shop)"},
            "external_id": {"type": ["string", "integer"], "description": "the order's id in its source (no `/`)"},
            "customer_id": {"type": "integer"},
            "customer": customer_ref,
            "lines": {"type": "array", "maxItems": MAX_LINES, "items": line_in},
            "amount": {**_MONEY_IN, "description": "what was paid; left out: the lines' total less the discount"},
            "discount": _MONEY_IN,
            "store": {"type": "string", "maxLength": 64},
            "channel": {"type": "string", "maxLength": 32},
            "campaign": {"type": "string", "maxLength": 128},
            "placed_at": {"type": "string", "description": "ISO 8601; without an offset: business time zone; "
                                                           "left out: now"},
            "coupon_code": {"type": "string", "maxLength": 64},
            "status": {"type": "string", "enum": list(ORDER_STATUSES), "default": "paid",
                       "description": _STATUS_TEXT},
            "refunded_amount": {**_MONEY_IN, "description": "for a back-filled refunded or partially refunded order"},
        },
    }
    line = {"type": "object", "required": ["sku", "quantity", "unit_price"],
            "properties": {"sku": {"type": "string"}, "name": _TEXT, "quantity": {"type": "integer"},
                           "unit_price": _MONEY}}
    order = {
        "type": "object",
        "required": ["id", "source", "external_id", "customer_id", "amount", "discount", "net_amount",
                     "refunded_amount", "lines", "placed_at", "status", "created_at"],
        "properties": {
            "id": {"type": "integer"}, "source": {"type": "string"}, "external_id": {"type": "string"},
            "customer_id": {"type": "integer"}, "amount": _MONEY, "discount": _MONEY,
            "net_amount": {**_MONEY, "description": "amount less refunds; 0 when refunded or cancelled"},
            "refunded_amount": _MONEY, "lines": {"type": "array", "items": line},
            "placed_at": {"type": "string", "format": "date-time"}, "store": _TEXT, "channel": _TEXT,
            "campaign": _TEXT, "coupon_code": _TEXT,
            "status": {"type": "string", "enum": list(ORDER_STATUSES), "description": _STATUS_TEXT},
            "created_at": {"type": "string", "format": "date-time"}, "updated_at": _TIME,
        },
    }
    changed = {"allOf": [_ref("Order"), {"type": "object", "required": ["applied"], "properties": {
        "applied": {"type": "boolean", "description": "false: already applied (same refund_id, already cancelled)"}}}]}
    item = {"type": "object", "required": ["index", "status"], "properties": {
        "index": {"type": "integer"},
        "status": {"type": "string", "enum": ["created", "existing", "conflict", "invalid"]},
        "id": {"type": "integer", "description": "the stored order (created, existing or conflicting)"},
        "order": {**_ref("Order"), "description": "for a conflict: the order stored under the key"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "code", "message"],
                                              "properties": {"field": {"type": "string"}, "code": {"type": "string"},
                                                             "message": {"type": "string"}}}}}}
    batch_in = {"type": "object", "required": ["orders"], "properties": {
        "orders": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": {
            "description": "an OrderIn (#/components/schemas/OrderIn); an order that is not valid is answered in "
                           "its own result (status `invalid`) and the others are stored"}}}}
    batch_out = {"type": "object", "required": ["results", "counts"], "properties": {
        "results": {"type": "array", "items": _ref("OrderBatchItem")},
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    refund = {"type": "object", "additionalProperties": False, "properties": {
        "amount": {**_MONEY_IN, "description": "left out: all that is left"},
        "refund_id": {"type": "string", "maxLength": 128,
                      "description": "your refund's id: a retry with the same id is applied once"}}}
    return {"OrderIn": order_in, "Order": order, "OrderChanged": changed, "OrderBatchItem": item,
            "OrderBatch": batch_in, "OrderBatchResult": batch_out, "OrderRefund": refund}


def orders_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    key = [{"name": "source", "in": "path", "required": True, "schema": {"type": "string"}},
           {"name": "external_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    tags = ["orders"]
    return {
        "/orders": {"post": {
            "operationId": "create_order",
            "summary": "Store an order (integration role or admin); its customer's RFM and segment follow, and "
                       "`order.created` is emitted",
            "tags": tags,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("OrderIn")}}},
            "responses": {"201": _json(_ref("Order"), "Created"),
                          "200": _json(_ref("Order"), "The same order again: the stored order"),
                          **errors(400, 401, 403, 413, 422),
                          "409": _json(_ref("Error"), "`conflict`: this source and external id are stored with "
                                                      "other content")},
        }},
        "/orders/batch": {"post": {
            "operationId": "create_orders",
            "summary": f"Store up to {MAX_BATCH} orders in one transaction; one result per item",
            "tags": tags,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("OrderBatch")}}},
            "responses": {"200": _json(_ref("OrderBatchResult"), "A result per order, in order"),
                          **errors(400, 401, 403, 413, 422)},
        }},
        "/orders/{source}/{external_id}": {"get": {
            "operationId": "get_order",
            "summary": "One order",
            "tags": tags,
            "parameters": key,
            "responses": {"200": _json(_ref("Order"), "The order"), **errors(401, 403, 404)},
        }},
        "/orders/{source}/{external_id}/refund": {"post": {
            "operationId": "refund_order",
            "summary": "Refund all or part of a paid order; emits `order.refunded`",
            "tags": tags,
            "parameters": key,
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("OrderRefund")}}},
            "responses": {"200": _json(_ref("OrderChanged"), "The order after the refund"),
                          **errors(400, 401, 403, 404, 422),
                          "409": _json(_ref("Error"), "`order_refunded`, `order_cancelled`: nothing left to refund")},
        }},
        "/orders/{source}/{external_id}/cancel": {"post": {
            "operationId": "cancel_order",
            "summary": "Cancel a paid or partially refunded order; emits `order.refunded` with status cancelled",
            "tags": tags,
            "parameters": key,
            "responses": {"200": _json(_ref("OrderChanged"), "The cancelled order"),
                          **errors(401, 403, 404),
                          "409": _json(_ref("Error"), "`order_refunded`: a refunded order cannot be cancelled")},
        }},
    }
