"""Accounts: users, argon2 password hashes, API tokens and role checks.

* Passwords are stored as argon2id hashes only; a hash made with older
  parameters is upgraded on the next successful login.
* An API token is random, shown once at creation, and only its SHA-256 is
  stored: a database leak leaks no usable token.
* Roles come from the published definitions (``submit_roles``/``view_roles``
  of a form); the built-in ``admin`` role may do everything.
* Sign-ins (:meth:`AccountService.login`) are throttled per account and per
  address in the database (:mod:`engine.login_throttle`), refused before any
  password is verified while locked, and audited.
* Every user has a session version; logout, a password change and an admin
  reset increment it, ending every session of the user in every process.
* Passwords a person chooses pass :class:`engine.passwords.PasswordPolicy`.

The service reads no clock: every call that records a time takes ``now``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from engine.definitions.errors import did_you_mean
from engine.definitions.specs import FormSpec
from engine.login_throttle import ThrottlePolicy, account_key, address_key, retry_after_seconds
from engine.text_clean import clean_name
from engine.passwords import PasswordPolicy, PasswordProblem
from engine.storage import accounts_repo as repo
from engine.storage import throttle_repo
from engine.storage.audit import append_audit
from engine.storage.database import transaction

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

ADMIN = "admin"
TOKEN_PREFIX = "pf_"
#: How stale ``last_used_at`` may get before a request writes it again.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=5)
#: How long a process trusts a token it has checked before asking the database
#: again: a token revoked by another process stops working within this time
#: (at once in the process that revoked it). One second: issue 16 asks for
#: revocation across processes "within a second"; a busy client still saves
#: all but one lookup a second.
TOKEN_CACHE_SECONDS = 1.0
#: Length of the one-time password an admin reset prints.
ONE_TIME_PASSWORD_BYTES = 12


class AccountError(ValueError):
    """A user-fixable problem (unknown role, duplicate user name, ...)."""


class PasswordRejected(AccountError):
    """A new password breaks the policy; ``problems`` says how (codes for translation)."""

    def __init__(self, problems: list[PasswordProblem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


class WrongPassword(AccountError):
    """The current password given to a change is wrong (counted like a failed sign-in)."""


class LoginLocked(AccountError):
    """Too many failed attempts: nothing is verified until ``retry_after`` seconds pass."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed attempts; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginResult:
    """The outcome of a sign-in attempt.

    ``principal`` is set on success (with the ``session_version`` to put in
    the session and whether the password must be changed first);
    ``retry_after`` (seconds) is set when the attempt was refused by, or has
    just started, a lock-out."""

    principal: Principal | None = None
    session_version: int = 0
    must_change_password: bool = False
    retry_after: int | None = None


@dataclass(frozen=True)
class SessionUser:
    """The user behind a session cookie whose version still matches."""

    principal: Principal
    must_change_password: bool


@dataclass(frozen=True)
class Principal:
    """Who is acting: a signed-in user or the owner of an API token."""

    id: int
    username: str
    roles: frozenset[str]
    display_name: str | None = None
    locale: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def name(self) -> str:
        return self.display_name or self.username

    def has_any(self, roles: Iterable[str]) -> bool:
        """True for admin, or when the user holds one of ``roles``."""
        return self.is_admin or not self.roles.isdisjoint(roles)


def can_submit(user: Principal, form: FormSpec) -> bool:
    """May ``user`` submit ``form``? Admin, a ``submit_roles`` holder, or anyone
    signed in for a public form (a survey answered without an account)."""
    return user.has_any(form.submit_roles) or form.public


def can_view_all(user: Principal, form: FormSpec) -> bool:
    """May ``user`` read every record of ``form``? Admin or a ``view_roles`` holder."""
    return user.has_any(form.view_roles)


def can_list(user: Principal, form: FormSpec) -> bool:
    """May ``user`` open the record list of ``form`` (all records or only their own)?"""
    return can_view_all(user, form) or can_submit(user, form)


def can_view_record(user: Principal, form: FormSpec, created_by: str | None) -> bool:
    """Readers of all records, and the submitter (user name) of this one."""
    return can_view_all(user, form) or (created_by is not None and created_by == user.username)


def can_edit_record(user: Principal, form: FormSpec, created_by: str | None) -> bool:
    """Admin; otherwise by the form's ``edit.by``: the submitter, the
    ``view_roles`` holders, or nobody. Whether the record is still editable
    (``edit.until``, workflow state) is the record service's call."""
    if user.is_admin:
        return True
    if form.edit_by == "submitter":
        return created_by is not None and created_by == user.username
    if form.edit_by == "view_roles":
        return can_view_all(user, form)
    return False


def hash_token(token: str) -> str:
    """The stored form of an API token: SHA-256 hex of its text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UserInfo:
    """A user as an administrator sees it (``users list``, the admin methods)."""

    username: str
    roles: frozenset[str]
    manager: str | None
    active: bool
    display_name: str | None = None


def _principal(row: repo.UserRow) -> Principal:
    return Principal(row.id, row.username, row.roles, row.display_name, row.locale)


@dataclass(frozen=True)
class _Audit:
    """The audit entry of an account change made through ``_update`` (written
    only when something changed and the caller gave ``now``)."""

    action: str
    now: datetime | None
    actor: str | None
    diff: dict[str, Any]


class AccountService:
    """Users, passwords, tokens. One instance per application, thread-safe."""

    def __init__(self, session_factory: sessionmaker[Session], *, hasher: PasswordHasher | None = None,
                 policy: PasswordPolicy | None = None, throttle: ThrottlePolicy | None = None,
                 token_cache_seconds: float = TOKEN_CACHE_SECONDS):
        self._sessions = session_factory
        self._hasher = hasher or PasswordHasher()
        #: What a password set by a person must satisfy (add with ``check_password``, change, reset).
        self.policy = policy or PasswordPolicy()
        #: Free failures and lock growth of sign-in attempts.
        self.throttle = throttle or ThrottlePolicy()
        self._token_cache_seconds = token_cache_seconds
        # Verified against when the user does not exist, so a login attempt
        # takes as long for an unknown name as for a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))
        # token digest -> (principal, monotonic time checked, last_used_at as stored)
        self._token_cache: dict[str, tuple[Principal, float, datetime | None]] = {}
        self._cache_lock = threading.Lock()
        #: Called with no arguments after a change to users, roles or managers
        #: has committed, so caches of the directory (e.g.
        #: ``WorkflowService.forget_directory``) drop their answers at once in
        #: this process. The app wiring registers them; other processes see
        #: the change within their own staleness bound.
        self.on_directory_changed: list[Callable[[], None]] = []

    def _directory_changed(self) -> None:
        """Tell the listeners that users, roles or managers changed (after commit).

        A failing listener is logged and does not undo or hide the committed change."""
        for listener in list(self.on_directory_changed):
            try:
                listener()
            except Exception:  # noqa: BLE001 - the change is committed; a cache must not fail it
                log.exception("directory listener %r failed", listener)

    # ---------------------------------------------------------------- users

    def known_roles(self) -> list[str]:
        """Roles a user may be given: the published role ids plus ``admin``."""
        with self._sessions() as session:
            return sorted({ADMIN, *repo.published_role_ids(session)})

    def check_roles(self, roles: Iterable[str]) -> None:
        """Raise AccountError naming every unknown role, with a did-you-mean."""
        known = self.known_roles()
        bad = [r for r in roles if r not in known]
        if bad:
            raise AccountError("\n".join(f"unknown role `{r}`{did_you_mean(r, known)}" for r in bad)
                               + f"\nknown roles: {', '.join(known)}")

    def add_user(
        self, username: str, *, roles: Iterable[str], password: str | None, now: datetime,
        display_name: str | None = None, email: str | None = None, manager: str | None = None,
        locale: str | None = None, check_roles: bool = True, check_password: bool = False,
        actor: str | None = None,
    ) -> Principal:
        """Create a user with ``roles`` (checked against the published roles).

        ``password=None`` makes an account that cannot sign in with a password
        (API token only). ``check_password=True`` applies the password policy
        (``promoflow users add`` does; seeding code such as the demo does not).

        Raises:
            AccountError: empty or taken name, unknown role or manager.
            PasswordRejected: ``check_password`` and the password breaks the policy.
        """
        username = username.strip()
        roles = list(dict.fromkeys(roles))
        if not username:
            raise AccountError("a user name is required")
        if check_password and password is not None:
            self.check_password(password, username)
        if check_roles:
            self.check_roles(roles)
        password_hash = None if password is None else self._hasher.hash(password)
        with transaction(self._sessions) as session:
            if repo.get_user_by_name(session, username) is not None:
                raise AccountError(f"user `{username}` already exists")
            manager_id = None
            if manager:
                boss = repo.get_user_by_name(session, manager)
                if boss is None:
                    raise AccountError(f"unknown manager `{manager}`")
                manager_id = boss.id
            row = repo.add_user(session, username=username, password_hash=password_hash, roles=roles,
                                now=now, display_name=(clean_name(display_name) or None) if display_name else None,
                                email=email, manager_id=manager_id,
                                locale=locale)
            append_audit(session, at=now, actor=actor, action="user.created", entity_type="user", entity_id=row.id,
                         diff={"username": username, "roles": sorted(roles), "manager": manager})
        self._directory_changed()
        return _principal(row)

    def list_users(self) -> list[UserInfo]:
        """Every user, active or not, by user name."""
        with self._sessions() as session:
            rows = repo.list_users(session)
        names = {r.id: r.username for r in rows}
        return [UserInfo(r.username, r.roles, names.get(r.manager_id) if r.manager_id else None, r.active,
                         r.display_name) for r in rows]

    def _info(self, session: Session, row: repo.UserRow) -> UserInfo:
        manager = repo.get_user(session, row.manager_id) if row.manager_id is not None else None
        return UserInfo(row.username, row.roles, manager.username if manager else None, row.active, row.display_name)

    @staticmethod
    def _existing(session: Session, username: str) -> repo.UserRow:
        row = repo.get_user_by_name(session, username)
        if row is None:
            raise AccountError(f"unknown user `{username}`")
        return row

    def _changed(self) -> None:
        """After a committed change to a user: drop the cached token principals
        (they carry roles and stand for active users) and tell the listeners."""
        self._forget()
        self._directory_changed()

    def set_roles(self, username: str, roles: Iterable[str], *, now: datetime,
                  check_roles: bool = True, actor: str | None = None) -> UserInfo:
        """Make ``roles`` exactly the roles of ``username`` (checked against the
        published roles unless ``check_roles=False``, as in :meth:`add_user`).

        ``now`` is the time of the change, audited as ``user.roles_changed``
        (old and new roles) when anything changed.

        Raises:
            AccountError: unknown user or role.
        """
        roles = list(dict.fromkeys(r.strip() for r in roles))
        if check_roles:
            self.check_roles(roles)

        def apply(session: Session, row: repo.UserRow) -> bool:
            if set(roles) == row.roles:
                return False
            repo.set_roles(session, row.id, roles)
            append_audit(session, at=now, actor=actor, action="user.roles_changed", entity_type="user",
                         entity_id=row.id, diff={"username": row.username, "from": sorted(row.roles),
                                                 "to": sorted(roles)})
            return True

        return self._update(username, apply)

    def set_store(self, username: str, store: str | None, *, now: datetime | None = None,
                  actor: str | None = None) -> UserInfo:
        """Assign ``username`` to ``store`` (a store code as in customers' ``store``
        attribute; None: no store). Role-addressed follow-up tasks about a
        customer of that store go to the role's holders assigned there.

        Raises:
            AccountError: unknown user, or a store code over 64 characters.
        """
        store = (store or "").strip() or None
        if store is not None and len(store) > 64:
            raise AccountError("a store code has at most 64 characters")
        return self._update(username, lambda session, row: repo.set_store(session, row.id, store),
                            audit=_Audit("user.store_changed", now, actor, {"store": store}))

    def set_manager(self, username: str, manager: str | None, *, now: datetime | None = None,
                    actor: str | None = None) -> UserInfo:
        """Make ``manager`` (a user name, or None for nobody) the manager of ``username``.

        Raises:
            AccountError: unknown user or manager, the user themself, or a
                manager who is (transitively) managed by the user.
        """

        def apply(session: Session, row: repo.UserRow) -> bool:
            manager_id = None
            if manager is not None:
                boss = repo.get_user_by_name(session, manager)
                if boss is None:
                    raise AccountError(f"unknown manager `{manager}`")
                if boss.id == row.id:
                    raise AccountError(f"`{username}` cannot be their own manager")
                chain = repo.manager_chain(session, boss.id)
                if row.id in chain:
                    names = repo.usernames(session, chain)
                    path = " → ".join(names[i] for i in chain[:chain.index(row.id) + 1])
                    raise AccountError(f"`{manager}` cannot manage `{username}`: that would make a cycle, "
                                       f"`{username}` is already above `{manager}` ({path})")
                manager_id = boss.id
            if manager_id == row.manager_id:
                return False
            repo.set_manager(session, row.id, manager_id)
            return True

        return self._update(username, apply, lock=repo.lock_managers,
                            audit=_Audit("user.manager_changed", now, actor, {"manager": manager}))

    def deactivate(self, username: str, *, now: datetime | None = None, actor: str | None = None) -> UserInfo:
        """Stop ``username`` signing in, using API tokens and getting new tasks.

        Tokens and roles are kept, so :meth:`activate` restores the account as
        it was. Tasks already assigned stay assigned. Raises AccountError for
        an unknown user."""
        return self._set_active(username, False, _Audit("user.deactivated", now, actor, {}))

    def activate(self, username: str, *, now: datetime | None = None, actor: str | None = None) -> UserInfo:
        """Undo :meth:`deactivate`. Raises AccountError for an unknown user."""
        return self._set_active(username, True, _Audit("user.activated", now, actor, {}))

    def _set_active(self, username: str, active: bool, audit: _Audit) -> UserInfo:
        def apply(session: Session, row: repo.UserRow) -> bool:
            if row.active == active:
                return False
            repo.set_active(session, row.id, active)
            return True

        return self._update(username, apply, audit=audit)

    def _update(self, username: str, apply: Callable[[Session, repo.UserRow], bool], *,
                lock: Callable[[Session], None] | None = None, audit: _Audit | None = None) -> UserInfo:
        """One change to an existing user: ``apply`` writes it (or not) and says
        whether anything changed; caches and listeners hear of it after commit.
        ``lock`` runs first in the transaction (set_manager's cycle check)."""
        with transaction(self._sessions) as session:
            if lock is not None:
                lock(session)
            row = self._existing(session, username)
            changed = apply(session, row)
            if changed is not False and audit is not None and audit.now is not None:
                append_audit(session, at=audit.now, actor=audit.actor, action=audit.action, entity_type="user",
                             entity_id=row.id, diff={"username": row.username, **audit.diff})
            info = self._info(session, repo.get_user(session, row.id) or row)
        if changed:
            self._changed()
        return info

    def get(self, user_id: int) -> Principal | None:
        """The active user with this id, or None."""
        with self._sessions() as session:
            row = repo.get_user(session, user_id)
        return _principal(row) if row is not None and row.active else None

    def by_name(self, username: str) -> Principal | None:
        """The active user with this name, or None."""
        with self._sessions() as session:
            row = repo.get_user_by_name(session, username)
        return _principal(row) if row is not None and row.active else None

    def usernames(self, ids: Iterable[int]) -> dict[int, str]:
        """``{id: username}`` for display."""
        with self._sessions() as session:
            return repo.usernames(session, ids)

    def check_password(self, password: str, username: str) -> None:
        """Raise PasswordRejected if ``password`` breaks the policy for ``username``."""
        problems = self.policy.problems(password, username)
        if problems:
            raise PasswordRejected(problems)

    def session_user(self, user_id: int, version: object) -> SessionUser | None:
        """The active user of a session cookie, if the cookie's ``version`` is
        still the user's session version (logout, a password change and a reset
        move it on, ending every older cookie). One read, as ``get``."""
        with self._sessions() as session:
            row = repo.get_user(session, user_id)
        if row is None or not row.active or not isinstance(version, int) or version != row.session_version:
            return None
        return SessionUser(_principal(row), row.must_change_password)

    def login(self, username: str, password: str, *, address: str | None, now: datetime) -> LoginResult:
        """A sign-in attempt from ``address``, throttled per account and per address.

        A locked account or address is refused before the password is
        verified (no argon2 work, no write). A failure counts against both
        keys and may start a lock (then ``retry_after`` is set); a success
        clears the account's count. Logins, failures and locks are audited.
        """
        username = username.strip()
        keys = [account_key(username)] + ([address_key(address)] if address else [])
        with self._sessions() as session:
            until = throttle_repo.locked_until(session, keys, now)
            row = repo.get_user_by_name(session, username)
        if until is not None:
            return LoginResult(retry_after=retry_after_seconds(until, now))
        stored = row.password_hash if row is not None and row.active else None
        try:
            self._hasher.verify(stored or self._dummy_hash, password)
            ok = row is not None and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            return self._failed(username, row, address, keys, now)
        assert row is not None and stored is not None
        with transaction(self._sessions) as session:
            throttle_repo.clear(session, keys[0])
            if self._hasher.check_needs_rehash(stored):
                repo.set_password_hash(session, row.id, self._hasher.hash(password))
            append_audit(session, at=now, actor=row.username, action="login", entity_type="user",
                         entity_id=row.id, diff={"address": address})
        return LoginResult(_principal(row), row.session_version, row.must_change_password)

    def _failed(self, username: str, row: repo.UserRow | None, address: str | None, keys: list[str],
                now: datetime) -> LoginResult:
        """Count a failed attempt against every key; lock those past their free failures."""
        policy = self.throttle
        frees = [policy.account_free] + ([policy.address_free] if address else [])
        lock_until: datetime | None = None
        with transaction(self._sessions) as session:
            counts: dict[str, int] = {}
            for key, free in zip(keys, frees, strict=True):
                failures = throttle_repo.record_failure(session, key, now, now - policy.forget_after)
                counts[key.split(":", 1)[0]] = failures
                lock_for = policy.lock_for(failures, free)
                if lock_for is not None:
                    throttle_repo.lock(session, key, now + lock_for)
                    append_audit(session, at=now, actor=username[:128], action="login_locked",
                                 entity_type="user" if key == keys[0] else "address",
                                 entity_id=(row.id if row else None) if key == keys[0] else address,
                                 diff={"failures": failures, "seconds": int(lock_for.total_seconds()),
                                       "address": address})
                    lock_until = max(lock_until or now, now + lock_for)
            append_audit(session, at=now, actor=username[:128], action="login_failed", entity_type="user",
                         entity_id=row.id if row else None, diff={"address": address, **counts})
        return LoginResult(retry_after=None if lock_until is None else retry_after_seconds(lock_until, now))

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The user if ``password`` is right and the account active, else None.

        Not throttled and not audited: for callers that are not a sign-in door
        (scripts, tests). People sign in through :meth:`login`."""
        with self._sessions() as session:
            row = repo.get_user_by_name(session, username.strip())
        stored = row.password_hash if row is not None and row.active else None
        try:
            self._hasher.verify(stored or self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or stored is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            with transaction(self._sessions) as session:
                repo.set_password_hash(session, row.id, self._hasher.hash(password))
        return _principal(row)

    def logout(self, user_id: int, *, now: datetime) -> None:
        """End every session of the user (this cookie and any copy of it, in every process)."""
        with transaction(self._sessions) as session:
            row = repo.get_user(session, user_id)
            if row is None:
                return
            repo.bump_session_version(session, user_id)
            append_audit(session, at=now, actor=row.username, action="logout", entity_type="user",
                         entity_id=user_id, diff=None)

    def change_password(self, username: str, old: str, new: str, *, now: datetime,
                        address: str | None = None) -> int:
        """The user changes their own password: ``old`` must be right (a wrong
        one counts as a failed sign-in, and a lock refuses the attempt), ``new``
        must pass the policy. Every session of the user ends; returns the new
        session version, for the session that made the change to carry on.

        Raises:
            LoginLocked: the account or address is locked out.
            WrongPassword: ``old`` is wrong.
            PasswordRejected: ``new`` breaks the policy.
        """
        keys = [account_key(username)] + ([address_key(address)] if address else [])
        with self._sessions() as session:
            until = throttle_repo.locked_until(session, keys, now)
            row = repo.get_user_by_name(session, username)
        if row is None or not row.active:
            raise AccountError(f"unknown user `{username}`")
        if until is not None:
            raise LoginLocked(retry_after_seconds(until, now))
        try:
            self._hasher.verify(row.password_hash or self._dummy_hash, old)
            ok = row.password_hash is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            result = self._failed(username, row, address, keys, now)
            if result.retry_after is not None:
                raise LoginLocked(result.retry_after)
            raise WrongPassword("the current password is wrong")
        if new == old:
            raise PasswordRejected([PasswordProblem("unchanged", "the new password must differ from the current one")])
        self.check_password(new, row.username)
        return self._replace_password(row, new, now=now, actor=row.username, action="password_changed",
                                      must_change=False)

    def set_password(self, username: str, password: str, *, now: datetime, actor: str | None = None) -> int:
        """An administrator sets ``username``'s password (policy applied, every
        session ends, the lock-out of the account is lifted). Returns the new
        session version.

        Raises:
            AccountError: unknown user. PasswordRejected: the policy.
        """
        with self._sessions() as session:
            row = self._existing(session, username)
        self.check_password(password, row.username)
        return self._replace_password(row, password, now=now, actor=actor, action="password_set",
                                      must_change=False)

    def reset_password(self, username: str, *, now: datetime, actor: str | None = None) -> str:
        """An administrator's reset: a random one-time password, returned to be
        handed over. It signs in once and then only opens the change-password
        page; every session of the user ends and the lock-out is lifted.

        Raises:
            AccountError: unknown user.
        """
        with self._sessions() as session:
            row = self._existing(session, username)
        password = secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)
        self._replace_password(row, password, now=now, actor=actor, action="password_reset", must_change=True)
        return password

    def _replace_password(self, row: repo.UserRow, password: str, *, now: datetime, actor: str | None,
                          action: str, must_change: bool) -> int:
        password_hash = self._hasher.hash(password)
        with transaction(self._sessions) as session:
            version = repo.replace_password(session, row.id, password_hash, now=now, must_change=must_change)
            throttle_repo.clear(session, account_key(row.username))
            append_audit(session, at=now, actor=actor, action=action, entity_type="user", entity_id=row.id,
                         diff={"username": row.username, "must_change": must_change})
        return version

    # --------------------------------------------------------------- tokens

    def create_token(self, username: str, *, now: datetime, name: str = "api", actor: str | None = None) -> str:
        """Create an API token for ``username`` and return it: the only time it is seen.

        Raises:
            AccountError: unknown user.
        """
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with transaction(self._sessions) as session:
            row = repo.get_user_by_name(session, username)
            if row is None:
                raise AccountError(f"unknown user `{username}`")
            repo.add_token(session, user_id=row.id, name=name, token_hash=hash_token(token), now=now)
            append_audit(session, at=now, actor=actor, action="token.created", entity_type="user", entity_id=row.id,
                         diff={"username": username, "name": name})
        return token

    def user_for_token(self, token: str, *, now: datetime) -> Principal | None:
        """The active user a live token belongs to, or None. Records the use
        (at most every few minutes, so reads do not turn into writes)."""
        if not token or len(token) > 200:
            return None
        digest = hash_token(token)
        cached = self._token_cache.get(digest)
        if cached is not None and time.monotonic() - cached[1] < self._token_cache_seconds:
            principal, _, last_used = cached
            if last_used is not None and now - last_used <= TOKEN_TOUCH_INTERVAL:
                return principal
        with self._sessions() as session:
            found = repo.find_token(session, digest)
            if found is None or found.revoked:
                self._forget(digest)
                return None
            row = repo.get_user(session, found.user_id)
        if row is None or not row.active:
            self._forget(digest)
            return None
        last_used = found.last_used_at
        if last_used is None or now - last_used > TOKEN_TOUCH_INTERVAL:
            with transaction(self._sessions) as session:
                repo.touch_token(session, found.id, now)
            last_used = now
        principal = _principal(row)
        with self._cache_lock:
            if len(self._token_cache) > 10_000:
                self._token_cache.clear()
            self._token_cache[digest] = (principal, time.monotonic(), last_used)
        return principal

    def token_refused(self, address: str | None, *, now: datetime) -> int | None:
        """A request from ``address`` sent an invalid or revoked token: the
        seconds it must wait if the address is (now) locked, else None.

        Counted under ``api:<address>`` with the address's free failures, so a
        client guessing or replaying tokens is slowed down without locking the
        sign-in page of the same network. Only locks are audited (a flood
        should not turn into a flood of audit rows)."""
        if not address:
            return None
        key = "api:" + address_key(address).split(":", 1)[1]
        with self._sessions() as session:
            until = throttle_repo.locked_until(session, [key], now)
        if until is not None:
            return retry_after_seconds(until, now)
        with transaction(self._sessions) as session:
            failures = throttle_repo.record_failure(session, key, now, now - self.throttle.forget_after)
            lock_for = self.throttle.lock_for(failures, self.throttle.address_free)
            if lock_for is None:
                return None
            throttle_repo.lock(session, key, now + lock_for)
            append_audit(session, at=now, actor=None, action="token_locked", entity_type="address",
                         entity_id=address[:128], diff={"failures": failures,
                                                        "seconds": int(lock_for.total_seconds())})
        return retry_after_seconds(now + lock_for, now)

    def _forget(self, digest: str | None = None) -> None:
        with self._cache_lock:
            if digest is None:
                self._token_cache.clear()
            else:
                self._token_cache.pop(digest, None)

    def revoke_tokens(self, username: str, *, now: datetime, name: str | None = None,
                      actor: str | None = None) -> int:
        """Revoke a user's tokens (those called ``name`` if given); returns how many."""
        with transaction(self._sessions) as session:
            row = repo.get_user_by_name(session, username)
            if row is None:
                raise AccountError(f"unknown user `{username}`")
            count = repo.revoke_tokens(session, row.id, now, name)
            if count:
                append_audit(session, at=now, actor=actor, action="token.revoked", entity_type="user",
                             entity_id=row.id, diff={"username": username, "name": name, "count": count})
        self._forget()
        return count


__all__ = [
    "ADMIN", "AccountError", "AccountService", "LoginLocked", "LoginResult", "PasswordRejected", "Principal",
    "SessionUser", "UserInfo", "WrongPassword", "can_edit_record", "can_list",
    "can_submit", "can_view_all", "can_view_record", "hash_token",
]
