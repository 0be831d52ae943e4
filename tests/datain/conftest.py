"""Fixtures for the data-in tests: the app on each database (``db_url``) with
the shipped library published, a settable clock, an integration user, a
marketing user, staff and an admin, with API tokens; and the scheduler's
automation tick as ``promoflow worker`` runs it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import Engine

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
PASSWORD = "secret-pw"
USERS = {"pos": ["integration"], "staff": ["staff"], "mkt": ["marketing"], "admin": ["admin"]}


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(db_engine: Engine, db_url: str, tmp_path: Path, clock: Clock) -> Flask:
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="test-secret",
                        timezone="Asia/Shanghai", locale="zh")
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                      "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                     settings=settings)
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, library_paths(), now=NOW, by="test")
    for name, roles in USERS.items():
        services.accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW)
    return app


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    accounts = app.extensions["promoflow"].accounts
    return {name: accounts.create_token(name, now=NOW) for name in USERS}


@pytest.fixture
def api(app: Flask, tokens: dict[str, str]) -> Callable[..., Any]:
    """``api("POST", "/customers", json=…, as_="pos")`` → the test response."""
    client = app.test_client()

    def call(method: str, path: str, *, as_: str = "pos", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {tokens[as_]}", **kwargs.pop("headers", {})}
        return client.open("/api/v1" + path, method=method, headers=headers, **kwargs)

    return call


@pytest.fixture
def worker_tick(app: Flask, clock: Clock) -> Callable[[datetime], Any]:
    """One automation tick of the scheduler (rules, events, journey steps) at
    ``now``, wired exactly as ``promoflow worker`` wires it."""
    from web.worker import tick_functions

    automation = dict(tick_functions(app.extensions["promoflow"]))["automation"]

    def tick(now: datetime) -> Any:
        clock.now = now
        return automation(now)

    return tick
