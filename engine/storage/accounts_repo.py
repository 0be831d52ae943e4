"""Users, their roles and API tokens: the queries behind ``engine.accounts``.

Functions take the caller's session and only flush, so creating a user with
its roles (or a token) commits or rolls back as one unit. Timestamps cross
the boundary through ``engine.storage.times`` (aware in, aware out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, true, update
from sqlalchemy.orm import Session

from engine.storage.models import ApiToken, Definition, User, UserRole
from engine.storage.times import from_db_time, to_db_time


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user as the rest of the engine sees it, detached from the session."""

    id: int
    username: str
    display_name: str | None
    email: str | None
    password_hash: str | None
    manager_id: int | None
    active: bool
    locale: str | None
    roles: frozenset[str]
    #: Sessions carry this; logout, password change and reset increment it.
    session_version: int = 0
    #: After an admin reset: the user must choose a new password first.
    must_change_password: bool = False


def _roles_of(session: Session, user_id: int) -> frozenset[str]:
    return frozenset(session.scalars(select(UserRole.role).where(UserRole.user_id == user_id)))


def _row(session: Session, user: User) -> UserRow:
    return UserRow(
        id=user.id, username=user.username, display_name=user.display_name, email=user.email,
        password_hash=user.password_hash, manager_id=user.manager_id, active=user.active,
        locale=user.locale, roles=_roles_of(session, user.id),
        session_version=user.session_version or 0, must_change_password=bool(user.must_change_password),
    )


def get_user(session: Session, user_id: int) -> UserRow | None:
    """The user with this id, or None."""
    user = session.get(User, user_id)
    return None if user is None else _row(session, user)


def get_user_by_name(session: Session, username: str) -> UserRow | None:
    """The user with this username (exact match), or None."""
    user = session.scalars(select(User).where(User.username == username)).first()
    return None if user is None else _row(session, user)


def usernames(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """``{id: username}`` for the given ids (unknown ids are left out)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(wanted)))
    return {uid: name for uid, name in rows}


def user_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    """``{username: id}`` for the given user names (unknown names are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    return {name: uid for uid, name in session.execute(select(User.id, User.username)
                                                         .where(User.username.in_(wanted)))}


def all_usernames(session: Session) -> list[str]:
    """Every user name (for "did you mean" on a name that is not one)."""
    return list(session.scalars(select(User.username).order_by(User.username)))


def add_user(
    session: Session, *, username: str, password_hash: str | None, roles: Iterable[str],
    now: datetime, display_name: str | None = None, email: str | None = None,
    manager_id: int | None = None, locale: str | None = None,
) -> UserRow:
    """Insert a user with its roles (flushed, not committed)."""
    user = User(
        username=username, display_name=display_name, email=email, password_hash=password_hash,
        manager_id=manager_id, active=True, locale=locale, created_at=to_db_time(now),
    )
    session.add(user)
    session.flush()
    for role in sorted(set(roles)):
        session.add(UserRole(user_id=user.id, role=role))
    session.flush()
    return _row(session, user)


def set_password_hash(session: Session, user_id: int, password_hash: str) -> None:
    """Replace a user's password hash (e.g. a rehash after parameters changed)."""
    user = session.get(User, user_id)
    if user is not None:
        user.password_hash = password_hash
        session.flush()


def replace_password(session: Session, user_id: int, password_hash: str, *, now: datetime,
                     must_change: bool) -> int:
    """Set a new password chosen by a person (change or admin reset): the hash,
    whether it must be changed at next sign-in, when it was set, and a new
    session version (every existing session of the user ends). Returns the
    new session version."""
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(user_id)
    user.password_hash = password_hash
    user.must_change_password = must_change
    user.password_changed_at = to_db_time(now)
    user.session_version = (user.session_version or 0) + 1
    session.flush()
    return user.session_version


def bump_session_version(session: Session, user_id: int) -> int:
    """End every session of the user (logout); returns the new version. One
    UPDATE, so two concurrent logouts both count."""
    session.execute(update(User).where(User.id == user_id)
                    .values(session_version=func.coalesce(User.session_version, 0) + 1))
    return int(session.scalar(select(User.session_version).where(User.id == user_id)) or 0)


def set_roles(session: Session, user_id: int, roles: Iterable[str]) -> None:
    """Make ``roles`` exactly the user's roles."""
    wanted = set(roles)
    current = set(_roles_of(session, user_id))
    for role in current - wanted:
        row = session.get(UserRole, (user_id, role))
        if row is not None:
            session.delete(row)
    for role in sorted(wanted - current):
        session.add(UserRole(user_id=user_id, role=role))
    session.flush()


def set_manager(session: Session, user_id: int, manager_id: int | None) -> None:
    """Make ``manager_id`` (or nobody) the user's manager. No cycle check: the caller's job."""
    user = session.get(User, user_id)
    if user is not None:
        user.manager_id = manager_id
        session.flush()


def set_store(session: Session, user_id: int, store: str | None) -> bool:
    """Assign the user to a store (or none, migration 0014); True when it changed."""
    user = session.get(User, user_id)
    if user is None or user.store == store:
        return False
    user.store = store
    session.flush()
    return True


def store_of(session: Session, user_id: int) -> str | None:
    """The store the user works at (None: none), which scopes a store manager's customers."""
    return session.scalar(select(User.store).where(User.id == user_id))


def set_active(session: Session, user_id: int, active: bool) -> None:
    """Activate or deactivate a user."""
    user = session.get(User, user_id)
    if user is not None:
        user.active = active
        session.flush()


def lock_managers(session: Session) -> None:
    """Serialize manager changes until the transaction ends, so two concurrent
    changes cannot each pass the cycle check and together close a cycle.

    PostgreSQL: a transaction-level advisory lock. SQLite: nothing to do, its
    writers are serial (``transaction`` holds the engine's writer lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "promoflow.managers"})


def manager_chain(session: Session, user_id: int) -> list[int]:
    """Ids of ``user_id``, its manager, the manager's manager, ... upwards.

    Stops before an id already seen, so a cycle already in the table (written
    behind the service's back) ends the walk instead of looping."""
    chain: list[int] = []
    current: int | None = user_id
    while current is not None and current not in chain:
        chain.append(current)
        current = session.scalar(select(User.manager_id).where(User.id == current))
    return chain


def list_users(session: Session) -> list[UserRow]:
    """Every user (active or not) with roles, by user name."""
    roles: dict[int, set[str]] = {}
    for uid, role in session.execute(select(UserRole.user_id, UserRole.role)):
        roles.setdefault(uid, set()).add(role)
    return [
        UserRow(id=u.id, username=u.username, display_name=u.display_name, email=u.email,
                password_hash=u.password_hash, manager_id=u.manager_id, active=u.active, locale=u.locale,
                roles=frozenset(roles.get(u.id, ())), session_version=u.session_version or 0,
                must_change_password=bool(u.must_change_password))
        for u in session.scalars(select(User).order_by(User.username))
    ]


def add_token(session: Session, *, user_id: int, name: str, token_hash: str, now: datetime) -> int:
    """Store a token's hash for a user; returns the token row's id."""
    token = ApiToken(user_id=user_id, name=name, token_hash=token_hash, created_at=to_db_time(now))
    session.add(token)
    session.flush()
    return token.id


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    user_id: int
    name: str
    last_used_at: datetime | None  # aware UTC
    revoked: bool


def find_token(session: Session, token_hash: str) -> TokenRow | None:
    """The token with this hash, or None."""
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == token_hash)).first()
    if token is None:
        return None
    last = None if token.last_used_at is None else from_db_time(token.last_used_at)
    return TokenRow(token.id, token.user_id, token.name, last, token.revoked_at is not None)


def touch_token(session: Session, token_id: int, now: datetime) -> None:
    """Record that a token was used at ``now``."""
    token = session.get(ApiToken, token_id)
    if token is not None:
        token.last_used_at = to_db_time(now)
        session.flush()


def revoke_tokens(session: Session, user_id: int, now: datetime, name: str | None = None) -> int:
    """Revoke a user's live tokens (only those called ``name`` if given); returns how many."""
    stmt = select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if name is not None:
        stmt = stmt.where(ApiToken.name == name)
    count = 0
    for token in session.scalars(stmt):
        token.revoked_at = to_db_time(now)
        count += 1
    session.flush()
    return count


def published_role_ids(session: Session) -> list[str]:
    """Ids of the roles in the latest published definitions, sorted."""
    stmt = select(Definition.def_id).where(Definition.kind == "role", Definition.is_latest == true())
    return sorted(session.scalars(stmt))
