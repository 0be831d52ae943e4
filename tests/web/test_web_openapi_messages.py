"""The messages API is in the OpenAPI document, and what it answers fits the
schemas the document declares."""

from __future__ import annotations

import json
import re

from flask import Flask
from jsonschema import Draft202012Validator
from test_web_messages import sample  # noqa: F401 - the fixture
from web_support import bearer


def _validator(doc: dict, name: str) -> Draft202012Validator:
    # Resolve the document's local $refs by validating against the whole components section.
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    text = json.dumps(schema).replace("#/components/schemas/", "#/$defs/")
    return Draft202012Validator(json.loads(text))


def test_messages_paths_and_schemas(app: Flask, sample, tokens) -> None:  # noqa: F811
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    assert "get" in paths["/messages"] and "get" in paths["/messages/{message_id}"]
    assert {"200", "404", "409"} <= set(paths["/messages/{message_id}/resend"]["post"]["responses"])
    status_param = next(p for p in paths["/messages"]["get"]["parameters"] if p["name"] == "status")
    assert "dead" in status_param["schema"]["enum"] and "unknown" in status_param["schema"]["enum"]
    for name in ("Message", "MessageList", "MessageResend", "MessageQueued"):
        Draft202012Validator.check_schema(schemas[name])
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc)):
        assert ref in schemas, ref

    auth = bearer(tokens["manager"])
    listing = client.get("/api/v1/messages", headers=auth).get_json()
    assert listing["messages"], "the sample has messages"
    _validator(doc, "MessageList").validate(listing)
    dead = next(m for m in listing["messages"] if m["status"] == "dead")
    _validator(doc, "Message").validate(client.get(f"/api/v1/messages/{dead['id']}", headers=auth).get_json())
    _validator(doc, "MessageQueued").validate(
        client.post(f"/api/v1/messages/{dead['id']}/resend", headers=auth).get_json())
