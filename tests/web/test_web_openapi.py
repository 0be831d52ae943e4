"""The OpenAPI 3.1 document: its shape, a path per published form, schemas that
are valid Draft 2020-12 and references that resolve; it describes real answers."""

from __future__ import annotations

from typing import Any

import jsonschema
from flask import Flask
from jsonschema import Draft202012Validator
from web_support import bearer, valid_activity

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_openapi_document_shape(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")  # public: no token needed
    assert response.status_code == 200 and response.is_json
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    assert set(doc) <= {"openapi", "info", "jsonSchemaDialect", "servers", "paths", "components", "security",
                        "tags", "externalDocs", "webhooks"}
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["servers"] == [{"url": "http://localhost/api/v1"}]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    forms = app.extensions["promoflow"].registry.current().forms
    assert set(forms) == {"activity_request", "nps_survey", "store_redemption", "launch_reservation", "o2o_campaign",
                          "clearance_plan", "dealer_target", "community_event"}
    for form_id in forms:
        item = doc["paths"][f"/forms/{form_id}/records"]
        assert item["post"]["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{form_id}"}
        assert {"201", "401", "403", "404", "422"} <= set(item["post"]["responses"])
        assert "200" in item["get"]["responses"]
    assert {"get", "patch"} <= set(doc["paths"]["/records/{record_id}"])
    operation_ids = []
    for path, item in doc["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            if method in METHODS:
                operation_ids.append(op["operationId"])
                for code, resp in op["responses"].items():
                    assert code.isdigit() and resp["description"]
    assert len(operation_ids) == len(set(operation_ids))
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for ref in _refs(doc):
        _resolve(doc, ref)


def test_schemas_describe_what_the_api_accepts_and_returns(app: Flask, tokens: dict[str, str]) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    schema = doc["components"]["schemas"]["activity_request"]
    assert schema["properties"]["budget"]["title"] == "预算(元)"
    assert "name" in schema["required"]
    payload = valid_activity()
    Draft202012Validator(schema).validate(payload)
    created = client.post("/api/v1/forms/activity_request/records", json=payload, headers=bearer(tokens["staff"]))
    record_schema = {**doc["components"]["schemas"]["activity_request_record"],
                     "components": doc["components"]}
    # resolve #/components/... refs against a copy that carries the components
    jsonschema.validate(created.get_json(), {**record_schema})
