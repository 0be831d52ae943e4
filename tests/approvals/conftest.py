"""Approvals fixtures: the shipped definitions published, people in every role
the shipped activity flow addresses, the workflow service wired into records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from engine.definitions.loader import load_paths
from engine.publishing import publish_set
from engine.records import RecordService
from engine.registry import DefinitionRegistry
from engine.storage.database import transaction
from engine.storage.models import User, UserRole
from engine.workflows import WorkflowService

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

#: user -> (roles, manager, email)
PEOPLE: dict[str, tuple[tuple[str, ...], str | None]] = {
    "director": (("marketing_director",), None),
    "mm": (("marketing_manager",), "director"),
    "staff": (("staff",), "mm"),
    "staff2": (("staff",), "mm"),
    "f1": (("finance",), None),
    "f2": (("finance",), None),
    "s1": (("store_manager",), None),
    "other": ((), None),
}


@pytest.fixture(scope="session")
def shipped():
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config"], relative_to=ROOT).raise_for_errors()


def add_people(session_factory: sessionmaker[Session], people: dict[str, tuple[tuple[str, ...], str | None]]) -> None:
    naive = NOW.replace(tzinfo=None)
    with transaction(session_factory) as s:
        users = {}
        for name in people:
            users[name] = User(username=name, display_name=name.upper(), email=f"{name}@example.com",
                               phone="13800000000", created_at=naive)
            s.add(users[name])
        s.flush()
        for name, (roles, manager) in people.items():
            if manager:
                users[name].manager_id = users[manager].id
            for role in roles:
                s.add(UserRole(user_id=users[name].id, role=role))


@pytest.fixture
def published(session_factory: sessionmaker[Session], shipped) -> sessionmaker[Session]:
    publish_set(session_factory, shipped, now=NOW, by="test")
    add_people(session_factory, PEOPLE)
    return session_factory


@pytest.fixture
def registry(published: sessionmaker[Session]) -> DefinitionRegistry:
    return DefinitionRegistry(published, max_staleness=0)


@pytest.fixture
def workflows(published: sessionmaker[Session], registry: DefinitionRegistry) -> WorkflowService:
    return WorkflowService(published, registry)


@pytest.fixture
def records(published: sessionmaker[Session], registry: DefinitionRegistry, workflows: WorkflowService) -> RecordService:
    return RecordService(published, registry, on_created=[workflows.start_in])


def activity(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "name": "春季促销", "channel": "wecom", "budget": "60000.00", "start_date": "2026-03-02",
        "end_date": "2026-03-05", "discount_type": "coupon", "coupon_value": 20,
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "5.5"}], "target_store": "all",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}
