"""Fixtures for the feedback tests: an app on each database with the shipped
definitions plus test feedback sources published, a settable clock, the
sources' secrets in the environment, and staff users."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app

from .support import NOW, PASSWORD, SECRET_KEY, SURVEY_SECRET, WECOM_AES_KEY, WECOM_TOKEN, Clock, csrf_from

HERE = Path(__file__).resolve().parent


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(db_engine: Engine, db_url: str, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("PF_TEST_WECOM_TOKEN", WECOM_TOKEN)
    monkeypatch.setenv("PF_TEST_WECOM_AES_KEY", WECOM_AES_KEY)
    monkeypatch.setenv("PF_TEST_SURVEY_SECRET", SURVEY_SECRET)
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key=SECRET_KEY,
                        timezone="Asia/Shanghai", locale="zh")
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                      "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                     settings=settings)
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), HERE / "sources.yaml"], now=NOW, by="test")
    for name, roles in {"marketer": ["marketing"], "staff": ["staff"]}.items():
        services.accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW)
    return app


@pytest.fixture
def services(app: Flask):  # noqa: ANN201 - the app's Services
    return app.extensions["promoflow"]


@pytest.fixture
def login(app: Flask) -> Callable[[str], FlaskClient]:
    def do(name: str) -> FlaskClient:
        client = app.test_client()
        page = client.get("/login")
        response = client.post("/login", data={"username": name, "password": PASSWORD,
                                               "csrf_token": csrf_from(page.text)})
        assert response.status_code == 302, response.text
        return client

    return do
