"""Fixtures for the web tests: an app on each database (``db_url``) with the
shipped definitions published, a fixed clock, users for the permission matrix
and their API tokens."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

# This folder is called ``web`` like the package under test; when pytest puts
# tests/ on sys.path (the ``pytest`` script, unlike ``python -m pytest``), the
# folder would shadow the package as a namespace package. Put the checkout first.
_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)
if getattr(sys.modules.get("web"), "__file__", "") is None:
    del sys.modules["web"]

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from web_support import NOW, PASSWORD, USERS, Clock, csrf_from

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app


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
def login(app: Flask) -> Callable[[str], FlaskClient]:
    """``login("staff")`` → a test client signed in as that user."""

    def do(name: str, lang: str | None = None) -> FlaskClient:
        client = app.test_client()
        page = client.get("/login" + (f"?lang={lang}" if lang else ""))
        response = client.post("/login", data={"username": name, "password": PASSWORD,
                                               "csrf_token": csrf_from(page.text)})
        assert response.status_code == 302, response.text
        return client

    return do




@pytest.fixture
def live_url(app: Flask) -> Iterator[str]:
    """The app under a real WSGI server (waitress) on a free loopback port."""
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
