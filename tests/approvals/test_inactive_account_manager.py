"""A deactivated account manager is not assigned approval tasks or notices
through a customer (``assignees: {field: customer}`` / ``to: account_manager``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from engine.storage import workflows_repo as repo
from engine.storage.database import transaction
from engine.storage.models import User
from tests.automation.helpers import add_customer, add_user

NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def test_only_an_active_account_manager_is_found(session_factory):
    with transaction(session_factory) as s:
        add_user(s, 900, "am_li", NOW)
        add_customer(s, 7, now=NOW, account_manager_id=900)
        add_customer(s, 8, now=NOW)
    with transaction(session_factory) as s:
        assert repo.account_manager_of(s, 7) == "am_li"
        assert repo.account_manager_of_fast(repo.Db.of(s), 7) == "am_li"
        assert repo.account_manager_of(s, 8) is None
        s.execute(update(User).where(User.id == 900).values(active=False))
    with transaction(session_factory) as s:
        assert repo.account_manager_of(s, 7) is None
        assert repo.account_manager_of_fast(repo.Db.of(s), 7) is None
