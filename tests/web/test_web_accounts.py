"""Accounts and role checks, and the deterministic demo data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.accounts import (
    AccountError,
    AccountService,
    Principal,
    can_edit_record,
    can_list,
    can_submit,
    can_view_all,
    can_view_record,
)
from engine.definitions.specs import FieldSpec, FormSpec
from engine.demo_data import generate, seed_demo
from engine.storage.models import Consent, Customer, CustomerTag, Order

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def test_passwords_and_tokens(session_factory: sessionmaker[Session]) -> None:
    accounts = AccountService(session_factory, hasher=FAST)
    user = accounts.add_user("amy", roles=["admin"], password="pw", now=NOW)
    assert accounts.authenticate("amy", "pw") == user
    assert accounts.authenticate("amy", "PW") is None and accounts.authenticate("bob", "pw") is None
    with pytest.raises(AccountError, match="unknown role `staf`"):
        accounts.add_user("x", roles=["staf"], password="pw", now=NOW)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_user("amy", roles=[], password="pw", now=NOW)
    token = accounts.create_token("amy", now=NOW)
    assert accounts.user_for_token(token, now=NOW) == user
    assert accounts.user_for_token(token + "x", now=NOW) is None
    assert accounts.revoke_tokens("amy", now=NOW) == 1
    assert accounts.user_for_token(token, now=NOW) is None
    # a hash made with weaker parameters is upgraded on the next login
    strong = AccountService(session_factory, hasher=PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    assert strong.authenticate("amy", "pw") is not None
    assert strong.authenticate("amy", "pw") is not None


def test_role_checks() -> None:
    form = FormSpec(id="f", title="F", fields=(FieldSpec(key="a", type="text", label="A"),),
                    submit_roles=("staff",), view_roles=("manager",))
    staff = Principal(1, "s", frozenset({"staff"}))
    manager = Principal(2, "m", frozenset({"manager"}))
    admin = Principal(3, "a", frozenset({"admin"}))
    nobody = Principal(4, "n", frozenset({"finance"}))
    assert [can_submit(u, form) for u in (staff, manager, admin, nobody)] == [True, False, True, False]
    assert [can_view_all(u, form) for u in (staff, manager, admin, nobody)] == [False, True, True, False]
    assert [can_list(u, form) for u in (staff, manager, admin, nobody)] == [True, True, True, False]
    assert can_view_record(staff, form, "s") and not can_view_record(staff, form, "other")
    assert can_edit_record(staff, form, "s") and not can_edit_record(manager, form, "s")
    assert can_edit_record(admin, form, "s")
    public = FormSpec(id="p", title="P", fields=form.fields, public=True)
    assert can_submit(nobody, public)


def test_demo_data_is_deterministic_and_consistent(session_factory: sessionmaker[Session]) -> None:
    first = generate(50, now=NOW, seed=7)
    assert first == generate(50, now=NOW, seed=7)
    assert first != generate(50, now=NOW, seed=8)
    summary = seed_demo(session_factory, now=NOW, customers=300, seed=7)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 300 == summary.customers
        assert session.scalar(select(func.count()).select_from(Order)) == summary.orders > 300
        assert session.scalar(select(func.count()).select_from(Consent)) == 900 == summary.consents
        assert session.scalar(select(func.count()).select_from(CustomerTag)) == summary.tags > 0
        # aggregates agree with the orders
        totals = dict(session.execute(select(Order.customer_id, func.sum(Order.amount)).group_by(Order.customer_id)).all())
        for customer in session.scalars(select(Customer).limit(50)):
            assert customer.total_spent == totals.get(customer.id, 0)
        assert session.scalar(select(func.count()).select_from(Customer).where(Customer.rfm_segment == "champion")) > 0


def test_token_checks_are_cached_briefly_and_revocation_is_seen(session_factory: sessionmaker[Session]) -> None:
    accounts = AccountService(session_factory, hasher=FAST)
    other_process = AccountService(session_factory, hasher=FAST)
    accounts.add_user("cat", roles=["admin"], password="pw", now=NOW)
    token = accounts.create_token("cat", now=NOW)
    assert accounts.user_for_token(token, now=NOW) is not None
    assert other_process.user_for_token(token, now=NOW) is not None
    # the revoking process forgets at once; another process trusts its check
    # for at most TOKEN_CACHE_SECONDS, then asks the database again
    assert accounts.revoke_tokens("cat", now=NOW) == 1
    assert accounts.user_for_token(token, now=NOW) is None
    assert other_process.user_for_token(token, now=NOW) is not None
    other_process._token_cache.clear()  # as if TOKEN_CACHE_SECONDS had passed
    assert other_process.user_for_token(token, now=NOW) is None
