"""Helpers for the campaign tests: the clock and bearer headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def statsmodels_modules() -> tuple[Any, Any]:
    """``statsmodels.stats.proportion`` and ``statsmodels.stats.weightstats``.

    pytest puts tests/ first on ``sys.path``, where tests/packaging (the wheel
    tests) shadows the ``packaging`` distribution statsmodels imports; import
    statsmodels with the real one, then give the shadow its name back."""
    import importlib
    import sys
    from pathlib import Path

    tests_dir = Path(__file__).resolve().parents[1]
    shadow = sys.modules.get("packaging")
    saved = sys.path[:]
    if shadow is not None and tests_dir in Path(getattr(shadow, "__file__", "/")).resolve().parents:
        del sys.modules["packaging"]
    else:
        shadow = None
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != tests_dir]
    try:
        proportion = importlib.import_module("statsmodels.stats.proportion")
        weightstats = importlib.import_module("statsmodels.stats.weightstats")
    finally:
        sys.path[:] = saved
        if shadow is not None:
            sys.modules["packaging"] = shadow
    return proportion, weightstats


def check_schema(app: Any, name: str, body: object) -> None:
    """Validate ``body`` against ``components.schemas[name]`` of the app's OpenAPI document."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    registry = Registry().with_resource("urn:openapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry).validate(body)
