"""Records fixtures: the shipped definitions published into the test database."""

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
from engine.storage.models import Customer, User

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.fixture(scope="session")
def shipped():
    return load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config"], relative_to=ROOT).raise_for_errors()


@pytest.fixture
def published(session_factory: sessionmaker[Session], shipped) -> sessionmaker[Session]:
    publish_set(session_factory, shipped, now=NOW, by="test")
    with transaction(session_factory) as s:
        s.add(User(username="alice", created_at=NOW.replace(tzinfo=None)))
        s.add(User(username="bob", created_at=NOW.replace(tzinfo=None)))
        s.add(Customer(id=7, name="张三", created_at=NOW.replace(tzinfo=None), updated_at=NOW.replace(tzinfo=None)))
    return session_factory


@pytest.fixture
def registry(published: sessionmaker[Session]) -> DefinitionRegistry:
    return DefinitionRegistry(published, max_staleness=0)


@pytest.fixture
def service(published: sessionmaker[Session], registry: DefinitionRegistry) -> RecordService:
    return RecordService(published, registry)


def activity(**overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "name": "春季促销", "channel": "wecom", "budget": "60000.00", "start_date": "2026-03-02",
        "end_date": "2026-03-05", "discount_type": "coupon", "coupon_value": 20,
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "5.5"}], "target_store": "all",
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def redemption(code: str = "WB20-8F3K2Q9A", **overrides: object) -> dict[str, object]:
    payload: dict[str, object] = {"customer": 7, "coupon_code": code, "order_amount": 199, "store": "sh_xujiahui"}
    payload.update(overrides)
    return payload
