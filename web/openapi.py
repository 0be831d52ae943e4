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

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {400: "Malformed request (JSON, filter, sort)", 401: "Missing or invalid bearer token",
             403: "The token's user lacks the role", 404: "Unknown form or record",
             409: "The record changed since the given version", 413: "Body too large",
             422: "Invalid data: field-level errors"}
    out: dict[str, Any] = {}
    for code in codes:
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
]


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
                "parameters": LIST_PARAMETERS,
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
                            "description": "The version last read; a later change gives 409"}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _json(_ref("Record"), "The updated record"),
                          **_errors(400, 401, 403, 404, 409, 413, 422)},
        },
    }
    paths["/openapi.json"] = {
        "get": {"operationId": "openapi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}},
    }
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
