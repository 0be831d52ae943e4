"""The promoflow web app: ``create_app`` wires settings, database, engine
services and blueprints, all inside the factory (nothing happens at import).

Per-app state lives in ``app.extensions["promoflow"]`` (a :class:`Services`):
the settings, the session factory, the definition registry, the record and
account services, the approval engine (``workflows``) and ``clock``, the one place the web layer reads the time
(tests replace it to fix ``now``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app

from engine.settings import Settings, load_settings

#: Largest request body accepted (an HTML form with file uploads); the API
#: lowers it per request.
MAX_CONTENT_LENGTH = 16 * 1024 * 1024
API_MAX_CONTENT_LENGTH = 1024 * 1024


def system_clock() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


@dataclass
class Services:
    """Everything a view needs from the engine, built once per app."""

    settings: Settings
    db_engine: Any
    session_factory: Any
    registry: Any
    records: Any
    accounts: Any
    clock: Callable[[], datetime]
    #: The approval engine (``engine.workflows.WorkflowService``); None only in
    #: hand-built Services without approvals.
    workflows: Any = None

    @property
    def tz(self) -> str:
        return self.settings.timezone

    def now(self) -> datetime:
        return self.clock()


def services() -> Services:
    """The current app's services."""
    return current_app.extensions["promoflow"]  # type: ignore[no-any-return]


def create_app(test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None) -> Flask:
    """Build the web app.

    ``settings`` defaults to :func:`load_settings`; ``test_config`` overrides
    Flask config and may carry ``DATABASE_URL`` (a database to use instead of
    the settings'), ``MIGRATE`` (default True: upgrade the schema on start),
    ``CLOCK`` (a callable returning an aware ``now``), ``PASSWORD_HASHER``
    (an argon2 ``PasswordHasher``, e.g. a cheap one in tests),
    ``LOGIN_THROTTLE`` (an ``engine.login_throttle.ThrottlePolicy``) and
    ``TOKEN_CACHE_SECONDS`` (see :func:`web.auth.account_options`).
    """
    from .auth import account_options
    from engine.accounts import AccountService
    from engine.records import RecordService
    from engine.registry import DefinitionRegistry
    from engine.storage.database import make_engine, make_session_factory
    from engine.storage.migrate import upgrade
    from engine.workflows import WorkflowService

    from engine.private_files import private_dir, restrict_umask

    restrict_umask()  # every file this process creates is owner-only (issue 16)
    config = dict(test_config or {})
    if settings is None:
        overrides = {"database_url": config["DATABASE_URL"]} if config.get("DATABASE_URL") else None
        if config.get("INSTANCE_PATH"):
            overrides = {**(overrides or {}), "instance_path": str(config["INSTANCE_PATH"])}
        settings = load_settings(overrides=overrides)
    elif config.get("DATABASE_URL"):
        settings = settings.with_database(str(config["DATABASE_URL"]))

    private_dir(settings.instance_path)  # 0700: database, uploads, backups and keys live here
    app = Flask(__name__, instance_path=str(settings.instance_path), instance_relative_config=False)
    app.config.from_mapping(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        API_MAX_CONTENT_LENGTH=API_MAX_CONTENT_LENGTH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's lifetime
        JSON_SORT_KEYS=False,
        MIGRATE=True,
        UPLOAD_FOLDER=str(settings.instance_path / "uploads"),
        # Accounts (issue 16): sign-ins last session_lifetime at most; the
        # cookie is only sent over https when the public address is https.
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime,
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
    )
    app.config.from_mapping(config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    from . import converters

    converters.init_app(app)  # ids beyond 64 bits do not match a route (404), issue 16

    db_engine = make_engine(settings.database_url)
    if app.config["MIGRATE"]:
        upgrade(db_engine)
    session_factory = make_session_factory(db_engine)
    registry = DefinitionRegistry(session_factory)
    accounts = AccountService(session_factory, **account_options(settings, config))
    # The approval engine starts a record's flow inside the record's create transaction.
    workflows = WorkflowService(session_factory, registry, accounts, tz=settings.timezone,
                                base_url=settings.base_url)
    # A user or role change made here reaches the approval directory at once, not after its cache expires.
    accounts.on_directory_changed.append(workflows.forget_directory)
    from engine.coupons.form_redemption import FormRedemption  # a form with `redeems_coupon` redeems on submit

    record_service = RecordService(session_factory, registry,
                                   on_created=(FormRedemption(registry, session_factory, tz=settings.timezone),
                                               workflows.start_in))
    app.extensions["promoflow"] = Services(
        settings=settings,
        db_engine=db_engine,
        session_factory=session_factory,
        registry=registry,
        records=record_service,
        accounts=accounts,
        clock=config.get("CLOCK") or system_clock,
        workflows=workflows,
    )

    from flask_wtf.csrf import CSRFProtect

    csrf = CSRFProtect(app)

    from . import api, auth, context, customers, errors, feedback, inbox, messages, records, rules, unsubscribe

    app.register_blueprint(auth.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(rules.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(unsubscribe.bp)
    app.register_blueprint(messages.api_bp)
    from . import clicks, sandbox; app.register_blueprint(clicks.bp); app.register_blueprint(sandbox.bp)  # noqa: E401,E702 (issue 12)
    from . import api_orders

    app.register_blueprint(api_orders.bp)  # orders in (integration tokens; exempts itself from CSRF)
    csrf.exempt(api.bp)  # bearer tokens only; no cookies are honoured there
    csrf.exempt(messages.api_bp)  # bearer tokens; receipts are verified by signature or token
    from . import followups  # follow-up tasks from rules (issue 12)

    app.register_blueprint(followups.bp)
    app.register_blueprint(followups.api_bp)
    csrf.exempt(followups.api_bp)  # bearer tokens only
    from . import api_customers  # data in (issue 12): customers, events, merge

    api_customers.init_app(app, csrf)
    from . import api_coupons, till  # coupon redemption (核销): the API and the store till page

    app.register_blueprint(api_coupons.bp)
    csrf.exempt(api_coupons.bp)  # bearer tokens only, like the rest of the API
    app.register_blueprint(till.bp)
    from . import ops; ops.init_app(app, csrf)  # noqa: E702 healthz, readyz, metrics, request ids (issue 17)
    from . import rights  # customer export and erasure, the audit trail (issue 16, admins)

    rights.init_app(app, csrf)
    from . import api_points  # loyalty points: redeem, balance and history (issue 13)

    api_points.init_app(app, csrf)
    from . import api_campaigns  # campaigns and their KPIs (issue 14)

    app.register_blueprint(api_campaigns.bp)  # exempts itself from CSRF (bearer tokens only)
    from . import alerts, dashboard, retrospectives  # campaign dashboard, alerts and 复盘 (issue 14)

    app.register_blueprint(dashboard.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(retrospectives.bp)
    errors.init_app(app)
    context.init_app(app)
    return app


__all__ = ["Services", "create_app", "services", "system_clock"]
