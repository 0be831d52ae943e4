"""Helpers shared by the web tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from typing import Any

import pytest

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai

#: user → roles. ``outsider`` holds a role that no form mentions.
USERS: dict[str, list[str]] = {
    "staff": ["staff"],
    "staff2": ["staff"],
    "manager": ["marketing_manager"],
    "admin": ["admin"],
    "outsider": ["account_manager"],
    "clerk": ["store_manager"],
}
PASSWORD = "secret-pw"

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Clock:
    """A settable clock for the app."""

    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def valid_activity(**overrides: Any) -> dict[str, Any]:
    """A valid activity_request API payload at NOW."""
    body: dict[str, Any] = {
        "name": "春季促销", "channel": "sms", "budget": "12000.00", "start_date": "2025-03-05",
        "end_date": "2025-03-20", "discount_type": "coupon", "coupon_value": "20",
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "3.50"}], "target_store": "all",
    }
    body.update(overrides)
    return body


def valid_activity_form(**overrides: str) -> dict[str, str]:
    """The same submission as the HTML page posts it."""
    data = {
        "name": "春季促销", "channel": "sms", "budget": "12000", "start_date": "2025-03-05",
        "end_date": "2025-03-20", "discount_type": "coupon", "coupon_value": "20",
        "materials-0-item": "海报", "materials-0-qty": "10", "materials-0-unit_cost": "3.5",
        "target_store": "all",
    }
    data.update(overrides)
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Marks for a browser walk: SQLite only (the page and API tests cover
#: PostgreSQL); without Chromium skipped on a developer's machine but failing
#: in CI, where scripts/services.sh installs Debian's Chromium.
BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
    pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true", reason="Chromium is not installed"),
]


def sign_in_browser(browser: Any, base: str, user: str, path: str, *, width: int = 390, height: int = 844,
                    locale: str = "zh-CN") -> Any:
    """A fresh browser context (its own cookies; a phone by default) signed in as ``user``, on ``path``."""
    context = browser.new_context(viewport={"width": width, "height": height}, locale=locale)
    page = context.new_page()
    page.goto(f"{base}{path}")
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page
