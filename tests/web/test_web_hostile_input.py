"""Hostile input gets a 4xx with a clear message, never a 500 (issue 16, item 6)."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from web_support import bearer

from web.converters import MAX_ID

_INT = re.compile(r"<int:[^>]+>")
_OTHER = re.compile(r"<[^>]+>")


def _numeric_rules(app: Flask) -> list[tuple[str, str]]:
    """(url with every id set to 2**63, method) for every ``<int:…>`` route."""
    found = []
    for rule in app.url_map.iter_rules():
        if "<int:" not in rule.rule:
            continue
        url = _OTHER.sub("x", _INT.sub(str(MAX_ID + 1), rule.rule))
        found.extend((url, m) for m in sorted(rule.methods - {"HEAD", "OPTIONS"}))
    return found


def test_ids_beyond_64_bits_are_not_found_on_every_numeric_route(app: Flask, tokens: dict[str, str],
                                                                  login) -> None:
    probes = _numeric_rules(app)
    assert len(probes) >= 15  # the walk really covers the numeric routes
    api = app.test_client()
    page = login("admin")
    for url, method in probes:
        client, headers = (api, bearer(tokens["admin"])) if url.startswith("/api/") else (page, {})
        response = client.open(url, method=method, headers=headers, json={})
        assert response.status_code in (404, 405), (method, url, response.status_code)
        if url.startswith("/api/"):
            assert response.get_json()["error"]["code"] in ("not_found", "method_not_allowed")


def test_largest_id_still_routes(app: Flask, tokens: dict[str, str]) -> None:
    """2**63-1 is a valid key: it reaches the view, which finds nothing (404)."""
    response = app.test_client().get(f"/api/v1/records/{MAX_ID}", headers=bearer(tokens["admin"]))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
