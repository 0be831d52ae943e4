"""Fixtures for the campaign tests: an app on each database (SQLite and
PostgreSQL, ``db_url``) with the shipped definitions published, a settable
clock, and users of the reading and writing roles with API tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import Engine

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app

from .support import NOW, Clock

USERS = {"till": ["integration"], "boss": ["admin"], "staff": ["staff"], "mm": ["marketing_manager"],
         "fin": ["finance"], "mkt": ["marketing"]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def extra_definitions() -> list[Path]:
    return []


@pytest.fixture
def app(db_engine: Engine, db_url: str, tmp_path: Path, clock: Clock, extra_definitions: list[Path]) -> Flask:
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh")
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                      "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                     settings=settings)
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), *extra_definitions], now=NOW, by="test")
    for name, roles in USERS.items():
        services.accounts.add_user(name, roles=roles, password="pw-secret", now=NOW)
    return app


@pytest.fixture
def services(app: Flask):
    return app.extensions["promoflow"]


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    accounts = app.extensions["promoflow"].accounts
    return {name: accounts.create_token(name, now=NOW) for name in USERS}
