"""The loyalty points part of the OpenAPI document (:mod:`web.api_points`):
redeem points, read a customer's balance and ledger. Kept beside
:mod:`web.openapi` like :mod:`web.openapi_orders`."""

from __future__ import annotations

from typing import Any

from engine.loyalty.points import MAX_POINTS

_KINDS = ["earn", "spend", "expire", "adjust", "reverse"]
_SOURCES = ["order", "rule", "api", "expiry"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def points_schemas() -> dict[str, Any]:
    redeem_in = {
        "type": "object", "additionalProperties": False,
        "required": ["customer_id", "points", "idempotency_key"],
        "description": "Spend points of a customer, oldest (first to lapse) first. Once per idempotency key.",
        "properties": {
            "customer_id": {"type": "integer", "minimum": 1},
            "points": {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 128,
                                "description": "your request's id (e.g. the till's receipt number): a retry with "
                                              "the same key is answered with the first result"},
            "reason": {"type": "string", "maxLength": 255},
        },
    }
    entry = {
        "type": "object",
        "required": ["id", "customer_id", "kind", "points", "remaining", "expires_on", "source", "idempotency_key",
                     "created_at"],
        "properties": {
            "id": {"type": "integer"}, "customer_id": {"type": "integer"},
            "kind": {"type": "string", "enum": _KINDS,
                     "description": "earn and adjust (positive) add a lot; spend, expire, reverse take from lots"},
            "points": {"type": "integer", "description": "positive: added; negative: taken"},
            "remaining": {"type": "integer", "description": "what is left of a lot; 0 for other entries"},
            "expires_on": {"type": ["string", "null"], "format": "date",
                           "description": "the local day a lot lapses (business time zone)"},
            "reason": {"type": ["string", "null"]},
            "source": {"type": "string", "enum": _SOURCES},
            "source_ref": {"type": ["string", "null"], "description": "the order id, or the expiry day"},
            "idempotency_key": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    }
    redeemed = {"type": "object", "required": ["entry", "balance"], "properties": {
        "entry": _ref("PointsEntry"), "balance": {"type": "integer", "description": "points left after it"}}}
    account = {
        "type": "object",
        "required": ["customer_id", "balance", "tier", "next_expiry", "total", "page", "per_page", "entries"],
        "properties": {
            "customer_id": {"type": "integer"},
            "balance": {"type": "integer", "description": "points that may be spent today"},
            "tier": {"type": ["string", "null"], "description": "the tier level key, if any"},
            "next_expiry": {"type": ["object", "null"], "required": ["on", "points"], "properties": {
                "on": {"type": "string", "format": "date"}, "points": {"type": "integer"}}},
            "total": {"type": "integer", "description": "ledger entries in all"},
            "page": {"type": "integer"}, "per_page": {"type": "integer"},
            "entries": {"type": "array", "items": _ref("PointsEntry"), "description": "newest first"},
        },
    }
    return {"PointsRedeem": redeem_in, "PointsEntry": entry, "PointsRedeemed": redeemed, "PointsAccount": account}


def points_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    tags = ["points"]
    paging = [{"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
              {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                             "default": 20}}]
    return {
        "/points/redeem": {"post": {
            "operationId": "redeem_points",
            "summary": "Spend a customer's points, oldest first (integration role or admin)",
            "tags": tags,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PointsRedeem")}}},
            "responses": {"201": _json(_ref("PointsRedeemed"), "Spent"),
                          "200": _json(_ref("PointsRedeemed"), "The same key again: the first redemption"),
                          **errors(400, 401, 403, 422),
                          "409": _json(_ref("Error"), "`conflict`: the key was used for another customer or "
                                                      "amount")},
        }},
        "/customers/{customer_id}/points": {"get": {
            "operationId": "customer_points",
            "summary": "A customer's points balance, next lapse and ledger (integration role or admin)",
            "tags": tags,
            "parameters": [{"name": "customer_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                           *paging],
            "responses": {"200": _json(_ref("PointsAccount"), "Balance and one page of the ledger"),
                          **errors(400, 401, 403, 404)},
        }},
    }
