"""The campaigns part of the OpenAPI document (``/api/v1/campaigns``, see
:mod:`web.api_campaigns`). The KPI schema is derived from the fields of
:class:`engine.campaigns.kpis.CampaignKpis`, so the document cannot drift
from what the API returns."""

from __future__ import annotations

import typing
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.campaigns import kpis as k
from engine.campaigns.service import CAMPAIGN_STATUSES, COST_CATEGORIES

_MONEY = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "examples": ["128.00"]}
_TIME = {"type": "string", "format": "date-time"}
_INTERVAL = {"type": "object", "description": "an estimate and its 95 % interval",
             "properties": {"estimate": {"type": "number"}, "low": {"type": "number"}, "high": {"type": "number"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schema_of(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        inner = _schema_of(next(a for a in args if a is not type(None)))
        return {"anyOf": [inner, {"type": "null"}]}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0])}
        return {"type": "array", "prefixItems": [_schema_of(a) for a in args]}
    if hint is Decimal:
        return dict(_MONEY)
    if hint is datetime:
        return dict(_TIME)
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if hint is k.Interval:
        return dict(_INTERVAL)
    if isinstance(hint, type) and hasattr(hint, "__dataclass_fields__"):
        return _ref(hint.__name__)
    return {}


def _dataclass_schema(cls: type, description: str) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(k))
    return {"type": "object", "description": description,
            "properties": {f.name: _schema_of(hints[f.name]) for f in fields(cls)},
            "required": [f.name for f in fields(cls)]}


def campaigns_schemas() -> dict[str, Any]:
    out = {cls.__name__: _dataclass_schema(cls, (cls.__doc__ or "").strip().split("\n\n")[0])
           for cls in (k.ArmKpis, k.RetentionCell, k.CohortRow, k.DailyRow, k.FunnelStage, k.CostLine, k.TargetRow)}
    out["CampaignKpis"] = _dataclass_schema(
        k.CampaignKpis, "A campaign's KPIs over a range: money as decimal strings, rates as fractions (0.25 = 25 %), "
                        "null where the denominator is 0. Formulas: docs/campaigns.md")
    out["Campaign"] = {"type": "object", "properties": {
        "id": {"type": "string"}, "title": {"type": "string"}, "title_en": {"type": ["string", "null"]},
        "source": {"type": "string", "enum": ["definition", "request"]}, "record_id": {"type": ["integer", "null"]},
        "owner": {"type": ["string", "null"]}, "channel": {"type": ["string", "null"]},
        "budget": {"anyOf": [_MONEY, {"type": "null"}]}, "starts_on": {"type": "string", "format": "date"},
        "ends_on": {"type": "string", "format": "date"}, "ended_at": {"type": ["string", "null"], "format": "date-time"},
        "attribution_window_days": {"type": "integer"},
        "status": {"type": "string", "enum": list(CAMPAIGN_STATUSES)},
        "targets": {"type": "array", "items": {"type": "object", "properties": {
            "metric": {"type": "string"}, "target": {"type": "string"}}}},
        "materials": {"type": "array", "items": {"type": "object"}}, "materials_cost": _MONEY,
        "rules": {"type": "array", "items": {"type": "string"}},
        "coupon_pools": {"type": "array", "items": {"type": "string"}},
        "forms": {"type": "array", "items": {"type": "string"}}, "created_at": _TIME, "updated_at": _TIME}}
    out["CampaignCostIn"] = {"type": "object", "additionalProperties": False, "required": ["category", "amount"],
                             "properties": {"category": {"type": "string", "enum": list(COST_CATEGORIES)},
                                            "amount": {"type": ["string", "number"],
                                                       "description": "> 0, at most 2 decimals"},
                                            "incurred_on": {"type": "string", "format": "date",
                                                            "description": "default: today (business time zone)"},
                                            "note": {"type": "string", "maxLength": 255}}}
    out["CampaignCost"] = {"type": "object", "properties": {
        "id": {"type": "integer"}, "campaign_id": {"type": "string"},
        "category": {"type": "string", "enum": list(COST_CATEGORIES)}, "amount": _MONEY,
        "incurred_on": {"type": "string", "format": "date"}, "note": {"type": ["string", "null"]},
        "created_by": {"type": ["string", "null"]}, "created_at": _TIME}}
    return out


def campaigns_paths(errors: Any) -> dict[str, Any]:
    """The paths; ``errors(*codes)`` is the document's shared error responses."""
    cid = [{"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    tags = ["campaigns"]
    listed = {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Campaign")},
                                               "count": {"type": "integer"}}}
    costs = {"type": "object", "properties": {"items": {"type": "array", "items": _ref("CampaignCost")},
                                              "count": {"type": "integer"}}}
    moment = ("a date (a business-zone day; `to` includes it) or an ISO 8601 date-time (without an offset: "
              "business time zone)")
    return {
        "/campaigns": {"get": {
            "operationId": "list_campaigns", "summary": "Every campaign with its status", "tags": tags,
            "parameters": [{"name": "status", "in": "query", "schema": {"enum": list(CAMPAIGN_STATUSES)}}],
            "responses": {"200": _json(listed, "The campaigns, newest first"), **errors(400, 401, 403)},
        }},
        "/campaigns/{campaign_id}": {"get": {
            "operationId": "get_campaign", "summary": "One campaign", "tags": tags, "parameters": cid,
            "responses": {"200": _json(_ref("Campaign"), "The campaign"), **errors(401, 403, 404)},
        }},
        "/campaigns/{campaign_id}/kpis": {"get": {
            "operationId": "get_campaign_kpis",
            "summary": "The campaign's KPIs over a range (default: its dates plus the attribution window), read "
                       "from the snapshot the worker keeps current",
            "tags": tags,
            "parameters": [*cid, {"name": "from", "in": "query", "schema": {"type": "string"}, "description": moment},
                           {"name": "to", "in": "query", "schema": {"type": "string"}, "description": moment},
                           {"name": "refresh", "in": "query", "schema": {"enum": ["1", "true"]},
                            "description": "recompute now instead of reading the snapshot"},
                           {"name": "total_revenue", "in": "query", "schema": {"enum": ["1", "true"]},
                            "description": "also sum every counted order of the range (`total_revenue`; else null)"}],
            "responses": {"200": _json(_ref("CampaignKpis"), "The KPIs"), **errors(401, 403, 404, 422)},
        }},
        "/campaigns/{campaign_id}/costs": {
            "get": {"operationId": "list_campaign_costs", "summary": "Costs entered by hand", "tags": tags,
                    "parameters": cid,
                    "responses": {"200": _json(costs, "The cost entries"), **errors(401, 403, 404)}},
            "post": {"operationId": "add_campaign_cost",
                     "summary": "Add a cost (labour, media, materials, other); marketing managers, finance, admin",
                     "tags": tags, "parameters": cid,
                     "requestBody": {"required": True,
                                     "content": {"application/json": {"schema": _ref("CampaignCostIn")}}},
                     "responses": {"201": _json(_ref("CampaignCost"), "Added"),
                                   **errors(400, 401, 403, 404, 422)}},
        },
        "/campaigns/{campaign_id}/end": {"post": {
            "operationId": "end_campaign", "summary": "End the campaign now (status ended)", "tags": tags,
            "parameters": cid,
            "responses": {"200": _json(_ref("Campaign"), "The ended campaign"), **errors(401, 403, 404)},
        }},
    }
