"""Fixtures for the loyalty tests: an app on each database with the shipped
definition library published (its points policy, tiers and the points-expiry
reminder), a settable clock, an integration user and an admin with tokens,
and members imported through the product's own CSV import."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from sqlalchemy import Engine

from engine.customers_import import import_customers
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app

from .support import CUSTOMERS_CSV, NOW, Clock

USERS = {"till": ["integration"], "boss": ["admin"], "mkt": ["marketing"], "staff": ["staff"]}
PASSWORD = "pw-secret"


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
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(CUSTOMERS_CSV, encoding="utf-8")
    import_customers(services.session_factory, csv_path, now=NOW, timezone="Asia/Shanghai", history=True)
    return app


@pytest.fixture
def services(app: Flask):
    return app.extensions["promoflow"]


@pytest.fixture
def tokens(app: Flask) -> dict[str, str]:
    accounts = app.extensions["promoflow"].accounts
    return {name: accounts.create_token(name, now=NOW) for name in USERS}
