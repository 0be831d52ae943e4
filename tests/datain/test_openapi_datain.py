"""The data-in API is in the OpenAPI document, and what it answers fits the
schemas the document declares (as tests/web/test_web_openapi_messages.py
does for messages)."""

from __future__ import annotations

import json
import re

from jsonschema import Draft202012Validator


def _validator(doc: dict, name: str) -> Draft202012Validator:
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    return Draft202012Validator(json.loads(text))


def test_paths_schemas_and_answers(app, api) -> None:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert {"post"} <= set(paths["/customers"]) and {"get", "patch"} <= set(paths["/customers/{customer_id}"])
    assert "post" in paths["/customers/{customer_id}/merge"] and "post" in paths["/events"]
    for name in ("CustomerIn", "CustomerBatch", "Customer", "CustomerBatchResult", "CustomerMerged", "EventIn",
                 "EventBatch", "EventResult", "EventBatchResult"):
        Draft202012Validator.check_schema(schemas[name])
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)):
        assert ref in schemas, ref

    single = {"phone": "13800000001", "name": "张三", "consent": {"sms": {"granted": True, "source": "pos"}},
              "tags": ["vip"], "attrs": {"store": "SH01"}}
    _validator(doc, "CustomerIn").validate(single)
    created = api("POST", "/customers", json=single)
    _validator(doc, "Customer").validate(created.get_json())
    cid = created.get_json()["id"]
    batch = {"items": [{"email": "b@example.com"}, {"phone": "x"}]}
    _validator(doc, "CustomerBatch").validate({"items": [{"email": "b@example.com"}]})
    result = api("POST", "/customers", json=batch).get_json()
    _validator(doc, "CustomerBatchResult").validate(result)
    _validator(doc, "Customer").validate(api("PATCH", f"/customers/{cid}", json={"city": "上海"}).get_json())
    _validator(doc, "ValidationErrors").validate(api("POST", "/customers", json={"phone": "1"}).get_json())
    other = result["results"][0]["id"]
    _validator(doc, "CustomerMerged").validate(api("POST", f"/customers/{cid}/merge", json={"from": other}).get_json())

    event = {"name": "custom.community.joined", "customer_id": cid, "idempotency_key": "k1", "data": {"a": 1}}
    _validator(doc, "EventIn").validate(event)
    _validator(doc, "EventResult").validate(api("POST", "/events", json=event).get_json())
    _validator(doc, "EventResult").validate(api("POST", "/events", json=event).get_json())
    _validator(doc, "EventBatchResult").validate(api("POST", "/events", json={"items": [
        {**event, "idempotency_key": "k2"}, {"name": "x"}]}).get_json())
    _validator(doc, "Error").validate(api("POST", "/events", json={"items": [event] * 1001}).get_json())
