"""Automation fixtures: the shipped rules, segments and templates, with log
connectors in place of the real providers (same ids, so `connector:` names resolve)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definitions.loader import DefinitionSet, load_paths

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def definitions() -> DefinitionSet:
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config" / "roles.yaml", HERE / "connectors.yaml"],
                      relative_to=ROOT).raise_for_errors()
