"""The product's HTTP API next to a scenario's fake clock: the Flask app on the
scenario's database with the shipped library published, and a token per role,
so scenario tests submit what people submit through the same door."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from flask.testing import FlaskClient

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from web import create_app


class Api:
    """``api.post(path, json, as_="staff", at=now)``: one request as that user at that time."""

    def __init__(self, db_url: str, instance: Path, now: datetime, users: dict[str, list[str]],
                 extra: tuple[Path, ...] = ()):
        """``extra``: definition files published with the shipped library."""
        self.now = now
        settings = Settings(instance_path=instance, database_url=db_url, secret_key="scenario-secret",
                            timezone="Asia/Shanghai", locale="zh")
        clock: Callable[[], datetime] = lambda: self.now
        self.app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                               "PASSWORD_HASHER": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)},
                              settings=settings)
        services = self.app.extensions["promoflow"]
        publish_paths(services.session_factory, [*library_paths(), *extra], now=now, by="scenario")
        self.tokens: dict[str, str] = {}
        for name, roles in users.items():
            services.accounts.add_user(name, roles=roles, password=None, now=now)
            self.tokens[name] = services.accounts.create_token(name, now=now)
        self.client: FlaskClient = self.app.test_client()

    def get(self, path: str, *, as_: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens[as_]}"})

    def post(self, path: str, body: Any, *, as_: str, at: datetime) -> Any:
        self.now = at
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[as_]}"})
