"""The operations part of the OpenAPI document (issue 17): ``/healthz`` and
``/readyz``. They live at the site root, not under ``/api/v1``, so each path
carries its own ``servers`` entry (``/``: the host the document came from).
``/metrics`` is Prometheus text, documented in docs/operations.md."""

from __future__ import annotations

from typing import Any

_ROOT = [{"url": "/", "description": "The site root (not under /api/v1)"}]


def ops_schemas() -> dict[str, Any]:
    check = {"type": "object", "required": ["ok"], "properties": {
        "ok": {"type": "boolean"}, "skipped": {"type": "string"}, "error": {"type": "string"},
        "backend": {"enum": ["sqlite", "postgresql"]}, "scheme": {"type": "string"},
        "current": {"type": ["string", "null"]}, "head": {"type": ["string", "null"]},
        "held": {"type": ["boolean", "null"]}, "holder": {"type": ["string", "null"]},
    }, "additionalProperties": False}
    return {
        "Health": {"type": "object", "required": ["status"], "additionalProperties": False,
                   "properties": {"status": {"const": "ok"}, "pid": {"type": "integer"}}},
        "Readiness": {"type": "object", "required": ["status", "checks"], "additionalProperties": False,
                      "properties": {
                          "status": {"enum": ["ready", "not ready"]},
                          "checks": {"type": "object", "required": ["database", "migrations", "scheduler", "broker"],
                                     "additionalProperties": False,
                                     "properties": {name: check for name in
                                                    ("database", "migrations", "scheduler", "broker")}}}},
    }


def ops_paths() -> dict[str, Any]:
    def body(name: str, description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    return {
        "/healthz": {"servers": _ROOT, "get": {
            "operationId": "healthz", "summary": "Liveness: the process serves requests (no database touched)",
            "security": [], "responses": {"200": body("Health", "Alive")}}},
        "/readyz": {"servers": _ROOT, "get": {
            "operationId": "readyz",
            "summary": "Readiness: database, migrations at head, broker when configured, scheduler leadership",
            "security": [], "responses": {"200": body("Readiness", "Ready"),
                                          "503": body("Readiness", "Not ready; the failing checks say why")}}},
    }


__all__ = ["ops_paths", "ops_schemas"]
