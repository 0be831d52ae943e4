"""The coupons part of the OpenAPI document (``/api/v1/coupons``, see
:mod:`web.api_coupons`): redeem at a till, check a code first, undo a
redemption when the order is refunded."""

from __future__ import annotations

from typing import Any

from engine.coupons import REASONS

_MONEY = {"type": ["string", "null"], "pattern": "^[0-9]+\\.[0-9]{2}$", "examples": ["20.00"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXTS = {"type": ["object", "null"], "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
          "required": ["zh", "en"], "description": "why it is refused, in Chinese and English"}
_REASON = {"type": ["string", "null"], "enum": [*REASONS, None]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def coupons_schemas() -> dict[str, Any]:
    request = {
        "type": "object", "additionalProperties": False,
        "required": ["code", "order_id", "order_amount"],
        "description": "Send `customer_id` or `phone` (who presents the coupon).",
        "properties": {
            "code": {"type": "string", "maxLength": 64, "examples": ["WB20KBEV2MSTRH"],
                     "description": "as issued; dashes, spaces and lower case are ignored"},
            "customer_id": {"type": "integer", "minimum": 1},
            "phone": {"type": "string", "maxLength": 32},
            "order_id": {"type": "string", "maxLength": 128,
                         "description": "the till's order number: the same order redeeming again gets the first result"},
            "order_amount": {"type": ["string", "number"], "examples": ["199.00"]},
            "store": {"type": "string", "maxLength": 64},
            "device": {"type": "string", "maxLength": 128},
        },
    }
    result = {
        "type": "object",
        "required": ["status", "code", "order_id", "replayed", "reason", "message"],
        "properties": {
            "status": {"type": "string", "enum": ["redeemed", "refused"]},
            "code": {"type": "string"}, "order_id": {"type": ["string", "null"]},
            "coupon_id": {"type": ["integer", "null"]}, "pool": {"type": ["string", "null"]},
            "customer_id": {"type": ["integer", "null"]}, "value": _MONEY, "redeemed_at": _TIME,
            "replayed": {"type": "boolean", "description": "a repeat of the order that redeemed it"},
            "reason": _REASON, "message": _TEXTS,
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "code", "message"]}},
        },
    }
    coupon = {
        "type": ["object", "null"],
        "properties": {"id": {"type": "integer"}, "pool": {"type": "string"}, "title": {"type": ["string", "null"]},
                       "title_en": {"type": ["string", "null"]}, "value": _MONEY, "min_order": _MONEY,
                       "status": {"type": "string", "enum": ["issued", "redeemed", "void"]},
                       "customer_id": {"type": ["integer", "null"]}, "issued_at": _TIME, "expires_at": _TIME,
                       "redeemed_at": _TIME, "redeemed_order": {"type": ["string", "null"]},
                       "redeemed_store": {"type": ["string", "null"]}},
        "required": ["id", "pool", "value", "status"],
    }
    check = {"type": "object", "required": ["code", "valid", "reason", "message", "coupon"],
             "properties": {"code": {"type": "string"}, "valid": {"type": "boolean"}, "reason": _REASON,
                            "message": _TEXTS, "coupon": coupon}}
    void = {"type": "object", "additionalProperties": False, "required": ["order_id"],
            "properties": {"order_id": {"type": "string", "maxLength": 128,
                                        "description": "the refunded order (the one that redeemed the coupon)"},
                           "cancel": {"type": "boolean", "default": False,
                                      "description": "void the coupon for good instead of making it usable again"},
                           "store": {"type": "string"}, "device": {"type": "string"}}}
    voided = {"type": "object", "required": ["status", "code", "coupon_status"],
              "properties": {"status": {"type": "string", "enum": ["restored", "cancelled", "repeated"]},
                             "code": {"type": "string"}, "coupon_status": {"type": ["string", "null"]}}}
    return {"RedeemRequest": request, "RedeemResult": result, "CouponCheck": check, "CouponVoid": void,
            "CouponVoided": voided}


def coupons_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    code = {"name": "code", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}

    def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"},
                "description": description}

    return {
        "/coupons/redeem": {"post": {
            "operationId": "redeem_coupon",
            "summary": "Redeem a coupon at a till (integration, staff, store managers)",
            "tags": ["coupons"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RedeemRequest")}}},
            "responses": {
                "200": _json(_ref("RedeemResult"), "Redeemed (or the same order's earlier redemption: `replayed`)"),
                "422": _json({"anyOf": [_ref("RedeemResult"), _ref("ValidationErrors")]},
                             "Refused (`status: refused`, `reason`, zh/en `message`, `errors`) or invalid data"),
                **errors(400, 401, 403, 413),
            },
        }},
        "/coupons/{code}": {"get": {
            "operationId": "check_coupon",
            "summary": "Would this code be redeemed now? Or why not",
            "tags": ["coupons"],
            "parameters": [code, query("customer_id", "who presents it", {"type": "integer"}),
                           query("phone", "who presents it"), query("order_amount", "to test the minimum order"),
                           query("order_id", "to test stacking"), query("store", "the store"),
                           query("device", "the till device")],
            "responses": {"200": _json(_ref("CouponCheck"), "The code exists: `valid` or the `reason`"),
                          "404": _json(_ref("CouponCheck"), "No coupon has this code (`reason: unknown`)"),
                          "422": _json(_ref("ValidationErrors"), "Invalid query"),
                          **errors(401, 403)},
        }},
        "/coupons/{code}/void": {"post": {
            "operationId": "void_coupon",
            "summary": "The order was refunded: the coupon is usable again (or void for good with `cancel`)",
            "tags": ["coupons"],
            "parameters": [code],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("CouponVoid")}}},
            "responses": {"200": _json(_ref("CouponVoided"), "Restored, cancelled, or already undone (`repeated`)"),
                          "409": _json(_ref("Error"), "`not_redeemed`, or `other_order`: redeemed by another order"),
                          **errors(400, 401, 403, 404, 422)},
        }},
    }


__all__ = ["coupons_paths", "coupons_schemas"]
