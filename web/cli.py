"""The ``promoflow`` command line.

Every command builds its settings when it runs (never at import time) and
talks to the engine only; errors a user can fix are printed one per line and
exit 1, never a traceback.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from engine.definitions.errors import DefinitionsInvalid
from engine.definitions.loader import load_paths
from engine.library import FOLDERS, library_paths, library_root
from engine.settings import Settings, SettingsError, load_settings


def _now() -> datetime:
    return datetime.now(UTC)


class Context:
    """Lazily built settings and database handles, one per CLI invocation."""

    def __init__(self, settings_file: str | None, database_url: str | None):
        self._settings_file = settings_file
        self._database_url = database_url
        self._settings: Settings | None = None
        self._session_factory = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            overrides = {"database_url": self._database_url} if self._database_url else None
            try:
                self._settings = load_settings(settings_file=self._settings_file, overrides=overrides)
            except SettingsError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    def session_factory(self, *, migrate: bool = True):
        if self._session_factory is None:
            from engine.storage.database import make_engine, make_session_factory
            from engine.storage.migrate import upgrade

            engine = make_engine(self.settings.database_url)
            if migrate:
                upgrade(engine)
            self._session_factory = make_session_factory(engine)
        return self._session_factory

    def default_paths(self) -> list[Path]:
        """The settings' definitions, else ./forms ./workflows ./config when
        this folder is a definitions project, else the shipped library."""
        if self.settings.definitions:
            return list(self.settings.definitions)
        here = [Path.cwd() / name for name in FOLDERS]
        if any(p.is_dir() for p in here):
            return [p for p in here if p.is_dir()]
        return library_paths()


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), envvar="PROMOFLOW_SETTINGS_FILE",
              help="A settings YAML file (default: <instance>/settings.yaml).")
@click.option("--database-url", envvar="PROMOFLOW_DATABASE_URL", help="Database URL (SQLite or PostgreSQL).")
@click.version_option(package_name="promoflow")
@click.pass_context
def main(ctx: click.Context, settings_file: str | None, database_url: str | None) -> None:
    """promoflow: forms, approvals and promotion automation as data."""
    ctx.obj = Context(settings_file, database_url)


def _print_errors(errors) -> None:
    for error in errors:
        click.echo(str(error), err=True)
    click.secho(f"{len(errors)} problem(s) found.", fg="red", err=True)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@pass_ctx
def validate(obj: Context, paths: tuple[str, ...]) -> None:
    """Check definitions (default: the project's forms/, workflows/, config/).

    Prints one problem per line as FILE:LINE:COL: MESSAGE and exits 1 if any.
    """
    result = load_paths(list(paths) or obj.default_paths())
    if result.errors:
        _print_errors(result.errors)
        sys.exit(1)
    counts: dict[str, int] = {}
    for doc in result.definitions.documents:
        counts[doc.kind] = counts.get(doc.kind, 0) + 1
    summary = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(counts.items()))
    click.echo(f"OK: {summary or 'no definitions'}.")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--by", default=None, help="Who publishes (recorded with each new version).")
@click.option("--journeys", "journeys_choice", type=click.Choice(["pin", "migrate", "drain"]), default="pin",
              show_default=True,
              help="For changed rules, subjects already in their journeys: pin (finish on the old version), "
                   "migrate (move to the step with the same id) or drain (finish on the old version; the rule "
                   "enters nobody until they are done).")
@pass_ctx
def publish(obj: Context, paths: tuple[str, ...], by: str | None, journeys_choice: str) -> None:
    """Validate definitions, then store all of them in one transaction.

    Each changed definition gets a new version; unchanged ones keep theirs. If
    anything is invalid, nothing is stored. For each changed rule it prints how
    many subjects in its journeys each --journeys choice affects, then applies
    the chosen one.
    """
    from engine.publishing import publish_paths

    try:
        report = publish_paths(obj.session_factory(), list(paths) or obj.default_paths(), now=_now(), by=by)
    except DefinitionsInvalid as exc:
        _print_errors(exc.errors)
        click.secho("Nothing was published.", fg="red", err=True)
        sys.exit(1)
    for change in report.changes:
        if change.status != "unchanged":
            click.echo(f"  {change.status:<9} {change.kind:<12} {change.def_id} v{change.version}")
            if change.kind == "rule" and change.status == "changed":
                _journeys_policy(obj, report.definitions.rules[change.def_id], change.version, journeys_choice)
    click.echo(f"Published: {report.count('new')} new, {report.count('changed')} changed, "
               f"{report.count('unchanged')} unchanged.")


def _journeys_policy(obj: Context, rule, version: int, choice: str) -> None:
    from engine.automation.versions import apply_policy, journey_impact
    from engine.storage.database import transaction

    with transaction(obj.session_factory()) as session:
        impact = journey_impact(session, rule.id, rule, new_version=version)
        if not impact["pin"]:
            return
        click.echo(f"    journeys under way on older versions: pin {impact['pin']} · migrate {impact['migrate']} "
                   f"(same step id) · drain {impact['drain']}")
        affected = apply_policy(session, rule.id, rule, version, choice, now=_now())
    what = {"pin": "finish on their version", "migrate": f"moved to v{version}",
            "drain": "finish on their version; no new entries until then"}[choice]
    click.echo(f"    --journeys {choice}: {affected} {what}")


@main.group()
def definitions() -> None:
    """Published definitions and their versions."""


@definitions.command("list")
@click.option("--kind", default=None, help="Only this kind (form, workflow, rule, …).")
@pass_ctx
def definitions_list(obj: Context, kind: str | None) -> None:
    """The latest version of every published definition."""
    from engine.storage.definitions_repo import list_definitions

    with obj.session_factory()() as session:
        rows = list_definitions(session, kind)
    if not rows:
        click.echo("No definitions published yet: run `promoflow publish`.")
        return
    click.echo(f"{'KIND':<12} {'ID':<28} {'VERSION':>7}  PUBLISHED            TITLE")
    for row in rows:
        title = row.body.get("title", "")
        published = row.published_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{row.kind:<12} {row.def_id:<28} {row.version:>7}  {published:<20} {title}")


@definitions.command("show")
@click.argument("def_id")
@click.option("--kind", default=None, help="The kind, when the id is used by several kinds.")
@click.option("--version", "version", type=int, default=None, help="A stored version (default: latest).")
@pass_ctx
def definitions_show(obj: Context, def_id: str, kind: str | None, version: int | None) -> None:
    """Show one published definition as YAML."""
    from engine.storage.definitions_repo import definition_versions, get_definition

    with obj.session_factory()() as session:
        row = get_definition(session, kind, def_id, version)
        if row is None:
            what = f"{def_id} version {version}" if version else def_id
            raise click.ClickException(f"no published definition `{what}`")
        versions = [v.version for v in definition_versions(session, row.kind, row.def_id)]
    click.echo(f"# {row.kind} {row.def_id} v{row.version} of {max(versions)}, published "
               f"{row.published_at:%Y-%m-%d %H:%M} UTC by {row.published_by or '-'} from {row.source_file or '-'}")
    click.echo(yaml.safe_dump(row.body, allow_unicode=True, sort_keys=False).rstrip())


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(obj: Context, revision: str) -> None:
    """Apply the Alembic migrations to the configured database."""
    from engine.storage.database import make_engine
    from engine.storage.migrate import current_revision, upgrade

    engine = make_engine(obj.settings.database_url)
    upgrade(engine, revision)
    click.echo(f"Database at revision {current_revision(engine)}: {engine.url.render_as_string(hide_password=True)}")


@db.command("current")
@pass_ctx
def db_current(obj: Context) -> None:
    """Print the database's migration revision."""
    from engine.storage.database import make_engine
    from engine.storage.migrate import current_revision

    click.echo(current_revision(make_engine(obj.settings.database_url)) or "empty (run `promoflow db upgrade`)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
def init(directory: str, force: bool) -> None:
    """Start a definitions project in DIRECTORY from the template library."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()) and not force:
        raise click.ClickException(f"{target} is not empty (use --force to write into it)")
    root = library_root()
    for name in FOLDERS:
        shutil.copytree(root / name, target / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py"))
    click.echo(f"Created {target} with {', '.join(FOLDERS)}. Next:\n"
               f"  cd {target}\n  promoflow validate\n  promoflow publish")


def _accounts(obj: Context):
    from engine.accounts import AccountService
    from engine.passwords import PasswordPolicy

    return AccountService(obj.session_factory(), policy=PasswordPolicy(min_length=obj.settings.password_min_length))


@main.group()
def users() -> None:
    """Accounts that sign in to the web app or call the API."""


@users.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, help="A role id (repeat for several); `admin` may do everything.")
@click.option("--password", default=None, help="The password (prompted for when left out).")
@click.option("--display-name", default=None, help="The name shown in the app.")
@click.option("--email", default=None)
@click.option("--manager", default=None, help="The user name of this user's manager.")
@click.option("--locale", type=click.Choice(["zh", "en"]), default=None, help="Language of the web pages.")
@pass_ctx
def users_add(obj: Context, name: str, roles: tuple[str, ...], password: str | None, display_name: str | None,
              email: str | None, manager: str | None, locale: str | None) -> None:
    """Create user NAME with roles from the published definitions (or admin)."""
    from engine.accounts import AccountError

    accounts = _accounts(obj)
    try:
        accounts.check_roles(roles)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    if password is None:
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if not password:
        raise click.ClickException("the password is empty")
    try:
        user = accounts.add_user(name, roles=roles, password=password, now=_now(), display_name=display_name,
                                 email=email, manager=manager, locale=locale, check_roles=False,
                                 check_password=True, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created user {user.username} (id {user.id}) with roles: {', '.join(sorted(user.roles)) or '-'}")


def _account_call(obj: Context, method: str, *args, **kwargs):
    """Call an AccountService method; an AccountError becomes a click error (exit 1, no traceback)."""
    from engine.accounts import AccountError

    try:
        return getattr(_accounts(obj), method)(*args, **kwargs)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("roles")
@click.argument("name")
@click.option("--role", "roles", multiple=True,
              help="A role id (repeat for several); replaces all of NAME's roles. None given: no roles.")
@pass_ctx
def users_roles(obj: Context, name: str, roles: tuple[str, ...]) -> None:
    """Set the roles of user NAME (the whole set) and print it."""
    user = _account_call(obj, "set_roles", name, roles, now=_now(), actor="cli")
    click.echo(f"{user.username} roles: {', '.join(sorted(user.roles)) or '-'}")


@users.command("manager")
@click.argument("name")
@click.argument("manager", required=False)
@click.option("--none", "clear", is_flag=True, help="Clear NAME's manager.")
@pass_ctx
def users_manager(obj: Context, name: str, manager: str | None, clear: bool) -> None:
    """Make MANAGER the manager of user NAME (or --none for nobody)."""
    if clear == (manager is not None):
        raise click.UsageError("give either MANAGER or --none")
    user = _account_call(obj, "set_manager", name, None if clear else manager, now=_now(), actor="cli")
    click.echo(f"{user.username} manager: {user.manager or '-'}")


@users.command("store")
@click.argument("name")
@click.argument("store", required=False)
@click.option("--none", "clear", is_flag=True, help="NAME works at no particular store.")
@pass_ctx
def users_store(obj: Context, name: str, store: str | None, clear: bool) -> None:
    """Assign user NAME to STORE (the code customers carry as attribute `store`),
    so role-addressed follow-up tasks about its customers reach NAME."""
    if clear == (store is not None):
        raise click.UsageError("give either STORE or --none")
    user = _account_call(obj, "set_store", name, None if clear else store, now=_now(), actor="cli")
    click.echo(f"{user.username} store: {store if not clear else '-'}")


@users.command("deactivate")
@click.argument("name")
@pass_ctx
def users_deactivate(obj: Context, name: str) -> None:
    """Stop user NAME signing in, using API tokens and getting new tasks."""
    user = _account_call(obj, "deactivate", name, now=_now(), actor="cli")
    click.echo(f"{user.username} is inactive (open tasks already assigned stay with them)")


@users.command("activate")
@click.argument("name")
@pass_ctx
def users_activate(obj: Context, name: str) -> None:
    """Let a deactivated user NAME sign in and get tasks again."""
    user = _account_call(obj, "activate", name, now=_now(), actor="cli")
    click.echo(f"{user.username} is active")


@users.command("list")
@pass_ctx
def users_list(obj: Context) -> None:
    """Every user: name, roles, manager, active."""
    found = _account_call(obj, "list_users")
    if not found:
        click.echo("No users.")
        return
    rows = [(u.username, ",".join(sorted(u.roles)) or "-", u.manager or "-", "yes" if u.active else "no")
            for u in found]
    header = ("NAME", "ROLES", "MANAGER", "ACTIVE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for r in [header, *rows]:
        click.echo("  ".join(f"{c:<{w}}" for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


@users.command("password")
@click.argument("name")
@pass_ctx
def users_password(obj: Context, name: str) -> None:
    """Set a new password for user NAME (prompted twice, hidden; the password policy applies).

    For the operator of the installation, who has the database anyway, so the
    current password is not asked (people change their own on the web page).
    Every session of NAME ends and a lock-out of NAME is lifted."""
    if name not in {u.username for u in _account_call(obj, "list_users")}:
        raise click.ClickException(f"unknown user `{name}`")  # before asking for a password
    password = click.prompt(f"New password for {name}", hide_input=True, confirmation_prompt=True)
    _account_call(obj, "set_password", name, password, now=_now(), actor="cli")
    click.echo(f"Password of {name} changed; every session of {name} has ended.")


@users.command("reset-password")
@click.argument("name")
@pass_ctx
def users_reset_password(obj: Context, name: str) -> None:
    """Reset the password of user NAME (an administrator's action) and print a
    one-time password: it signs in once, then NAME must choose a new password.
    Every session of NAME ends and a lock-out of NAME is lifted."""
    password = _account_call(obj, "reset_password", name, now=_now(), actor="cli")
    click.echo(password)
    click.echo(f"One-time password for {name}; hand it over privately. {name} must choose a new password "
               "at the next sign-in.", err=True)


@main.group()
def tokens() -> None:
    """API tokens (``Authorization: Bearer <token>``)."""


@tokens.command("create")
@click.argument("user")
@click.option("--name", "label", default="api", show_default=True, help="A label to tell tokens apart.")
@pass_ctx
def tokens_create(obj: Context, user: str, label: str) -> None:
    """Create an API token for USER and print it: it is shown only this once."""
    from engine.accounts import AccountError

    try:
        token = _accounts(obj).create_token(user, now=_now(), name=label, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)
    click.echo(f"Token `{label}` for {user}; store it now, it cannot be shown again.", err=True)


@tokens.command("revoke")
@click.argument("user")
@click.option("--name", "label", default=None, help="Only tokens with this label (default: all).")
@pass_ctx
def tokens_revoke(obj: Context, user: str, label: str | None) -> None:
    """Revoke USER's API tokens."""
    from engine.accounts import AccountError

    try:
        count = _accounts(obj).revoke_tokens(user, now=_now(), name=label, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Revoked {count} token(s) of {user}.")


def _serve(settings: Settings, host: str, port: int, threads: int, *, scheduler: bool = False,
           write_concurrency: int | None = None) -> None:
    """Run the web app under waitress until interrupted (with the scheduler
    in-process when asked: the embedded, one-process setup). Writing
    requests pass a :class:`web.write_gate.WriteGate` (``write_concurrency``;
    None: 1 on SQLite, no gate on PostgreSQL)."""
    from waitress import serve as waitress_serve

    from web import create_app
    from web.write_gate import default_limit, gate

    from web.logs import setup_logging

    setup_logging(settings.log_format, settings.log_level)  # text on a terminal, else JSON; request ids
    app = create_app(settings=settings)
    limit = default_limit(settings.database_url) if write_concurrency is None else write_concurrency
    app.wsgi_app = gate(app.wsgi_app, limit)  # type: ignore[method-assign]
    if scheduler:
        from web.worker import scheduler_init_app

        scheduler_init_app(app)
        click.echo("Scheduler running in this process (rules, journeys, approval reminders).")
    click.echo(f"Serving on http://{host}:{port}/ (Ctrl+C to stop)")
    waitress_serve(app, host=host, port=port, threads=threads, ident="promoflow")


@main.command()
@click.option("--interval", default=30.0, show_default=True, type=float, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Run one tick now and exit (cron-style hosting).")
@click.option("--celery", "celery_worker", is_flag=True,
              help="Run a Celery worker that executes the tasks the active scheduler enqueues "
                   "(needs PROMOFLOW_BROKER_URL; start any number).")
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --celery: tasks run at once in this process.")
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork", "solo"]),
              help="With --celery: Celery's execution pool.")
@click.option("--in-process", "in_process", is_flag=True,
              help="Run every tick part in this process even when a broker is configured.")
@pass_ctx
def worker(obj: Context, interval: float, once: bool, celery_worker: bool, concurrency: int, pool: str,
           in_process: bool) -> None:
    """Run the scheduler: due rules, journeys, events, approval reminders.

    Only one worker per database is active (PostgreSQL advisory lock, or a
    lock file beside the SQLite database); others stand by and take over.
    With PROMOFLOW_BROKER_URL set, the active one enqueues rule chunks,
    journey batches, deliveries and pulls for `promoflow worker --celery`.
    """
    import signal
    import threading

    if celery_worker:
        _celery_worker(obj.settings, concurrency=concurrency, pool=pool)
        return

    from web import create_app
    from web.connector_health import worker_lines
    from web.worker import scheduler_init_app

    from web.logs import setup_logging
    from web.retention import retention_tick

    setup_logging(obj.settings.log_format, obj.settings.log_level)  # lines carry the tick id
    app = create_app(settings=obj.settings)
    for line in worker_lines(app.extensions["promoflow"]):  # a connector that cannot deliver, and why
        click.secho(line, fg="yellow")
    celery = None
    if obj.settings.broker_url and not in_process:
        from web.celery_app import make_celery

        celery = make_celery(obj.settings)
        click.echo(f"Tasks go to the broker at {_redact(obj.settings.broker_url)} for `promoflow worker --celery`.")
    host = scheduler_init_app(app, interval=interval, start=not once, celery=celery)
    host.ticks.append(("retention", retention_tick(app.extensions["promoflow"])))  # prunes once a day
    if once:
        result = host.tick()
        for name, value in result.results.items():
            click.echo(f"{name}: {value}")
        for name, error in result.errors.items():
            click.echo(f"{name} failed: {error}", err=True)
        sys.exit(1 if result.errors else 0)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    click.echo(f"Worker started (tick every {interval:g}s); "
               f"{'active' if host.active else 'standing by for the active worker'}. Ctrl+C to stop.")
    while not stop.wait(1.0):
        pass
    host.shutdown()
    click.echo("Worker stopped.")


def _redact(url: str) -> str:
    """A broker URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _celery_worker(settings: Settings, *, concurrency: int, pool: str) -> None:
    """Run a Celery worker for the tasks of :mod:`web.celery_app` until stopped."""
    import os

    from web.logs import setup_logging

    if not settings.broker_url:
        raise click.ClickException("`--celery` needs a broker: set PROMOFLOW_BROKER_URL "
                                   "(redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//)")
    from web.celery_app import flask_app, make_celery

    setup_logging(settings.log_format, settings.log_level)
    celery = make_celery(settings)
    if pool != "prefork":
        flask_app()  # migrate and load definitions before taking tasks (prefork builds it per child)
    click.echo(f"Celery worker on {_redact(settings.broker_url)} ({pool}, concurrency {concurrency}).")
    celery.worker_main(["worker", "--loglevel", settings.log_level, "--pool", pool,
                        "--concurrency", str(concurrency), "--hostname", f"promoflow-{os.getpid()}@%h",
                        "--without-gossip", "--without-mingle"])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Web processes; more than 1 runs gunicorn (its master forks them).")
@click.option("--write-concurrency", type=click.IntRange(min=0), default=None,
              envvar="PROMOFLOW_WRITE_CONCURRENCY", show_envvar=True,
              help="Writing requests (POST/PUT/PATCH/DELETE) let into the app at once; 0: no limit. "
                   "Default: 1 on SQLite, whose writes are serial anyway; no limit on PostgreSQL.")
@pass_ctx
def serve(obj: Context, host: str, port: int, threads: int, workers: int, write_concurrency: int | None) -> None:
    """Serve the web app and API on the configured database: waitress in
    this process, or gunicorn with ``--workers N`` processes."""
    if workers > 1:
        from web.gunicorn_app import serve_gunicorn

        serve_gunicorn(obj.settings, host=host, port=port, workers=workers, threads=threads,
                       write_concurrency=write_concurrency)
        return
    _serve(obj.settings, host, port, threads, write_concurrency=write_concurrency)


#: Demo users: the role ids of the shipped definitions plus admin; password <name>123.
def _demo_users(accounts, role_ids: list[str], now: datetime) -> list[tuple[str, str, list[str]]]:
    made = []
    for name in ["admin", *role_ids]:
        password = f"{name}123"
        roles = [name]
        accounts.add_user(name, roles=roles, password=password, now=now, check_roles=False)
        made.append((name, password, roles))
    return made


def _play_demo(settings: Settings, start: datetime, days: int) -> None:
    """Play the demo's simulated days through the product's doors (:mod:`web.demo_play`)."""
    from zoneinfo import ZoneInfo

    from tqdm import tqdm

    from web import create_app
    from web.demo_play import SimClock, play

    clock = SimClock(start)
    app = create_app({"CLOCK": clock}, settings=settings)
    first = start.astimezone(ZoneInfo(settings.timezone)).date()
    with tqdm(total=days, desc="Playing the demo's days", unit="day", disable=None) as bar:
        report = play(app, clock, start=first, days=days, progress=bar.update)
    app.extensions["promoflow"].db_engine.dispose()
    click.echo(report.line())
    for problem in report.errors[:5]:
        click.echo(f"  ! {problem}", err=True)


def _demo_sandbox_settings(folder: Path) -> None:
    """The demo instance's settings file: every connector delivers to the
    built-in sandbox inbox (/sandbox), so messages go ``sent`` with no provider
    account; any command run on the instance folder sees the same."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "settings.yaml"
    if not path.exists():
        path.write_text("# The demo: messages go to the sandbox inbox (/sandbox), not to SMS/e-mail/WeCom providers.\n"
                        "connector_sandbox: true\n", encoding="utf-8")


@main.command()
@click.option("--instance", "instance", type=click.Path(file_okay=False), default="promoflow-demo",
              show_default=True, help="The demo's instance folder (created fresh).")
@click.option("--keep", is_flag=True, help="Reuse an existing demo instance instead of starting fresh.")
@click.option("--customers", default=3000, show_default=True, type=click.IntRange(0, 1_000_000),
              help="How many demo customers to seed.")
@click.option("--serve/--no-serve", "serve_app", default=None,
              help="Start the web app afterwards (default: only when run in a terminal).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--days", default=60, show_default=True, type=click.IntRange(0, 365),
              help="Simulated days to play before today: customers click, redeem, order, answer surveys.")
def demo(instance: str, keep: bool, customers: int, serve_app: bool | None, host: str, port: int,
         days: int) -> None:
    """Run the demo: a fresh embedded SQLite instance with the shipped process
    published, demo users for every role, demo customers and orders, and the
    web app started."""
    from engine.accounts import AccountService
    from engine.demo_data import seed_demo
    from engine.publishing import publish_paths
    from engine.storage.database import make_engine, make_session_factory
    from engine.storage.migrate import upgrade

    folder = Path(instance).resolve()
    if folder.exists() and not keep:
        shutil.rmtree(folder)
    existed = (folder / "promoflow.sqlite").exists()
    _demo_sandbox_settings(folder)
    settings = load_settings(overrides={"instance_path": str(folder), "database_url": ""}, environ={})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    session_factory = make_session_factory(engine)
    # A fresh demo starts `days` ago: the history is seeded then and the days since are played.
    now = _now() - timedelta(days=days if not existed else 0)
    try:
        report = publish_paths(session_factory, library_paths(), now=now, by="demo")
    except DefinitionsInvalid as exc:
        _print_errors(exc.errors)
        sys.exit(1)
    click.echo(f"promoflow demo — instance {folder}")
    click.echo(f"Database: {settings.database_url}")
    by_kind: dict[str, list[str]] = {}
    for doc in report.definitions.documents:
        by_kind.setdefault(doc.kind, []).append(doc.id)
    for kind, ids in by_kind.items():
        click.echo(f"  {kind:<12} {len(ids):>3}  {', '.join(ids)}")
    click.echo(f"Published: {report.count('new')} new, {report.count('changed')} changed, "
               f"{report.count('unchanged')} unchanged.")
    if not existed:
        accounts = AccountService(session_factory)
        role_ids = sorted(report.definitions.roles)
        made = _demo_users(accounts, role_ids, now)
        click.echo("Demo users (user / password):")
        for name, password, roles in made:
            click.echo(f"  {name:<20} / {password:<24} roles: {', '.join(roles)}")
        managers = tuple(p.id for p in [accounts.by_name("account_manager")] if p is not None)
        summary = seed_demo(session_factory, now=now, customers=customers, account_manager_ids=managers)
        click.echo(f"Demo data: {summary.customers} customers, {summary.orders} orders, "
                   f"{summary.tags} tags, {summary.consents} consents.")
    engine.dispose()
    if not existed and days:
        _play_demo(settings, now, days)
    if serve_app is None:
        serve_app = sys.stdin.isatty() and sys.stdout.isatty()
    click.echo(f"Messages are delivered to the sandbox inbox, not to providers: http://{host}:{port}/sandbox "
               "(sign in as marketing_manager or admin).")
    if serve_app:
        click.echo("Sign in as staff / staff123 to fill in a promotion activity request.")
        _serve(settings, host, port, threads=8, scheduler=True)
    else:
        click.echo(f"Start the web app with: promoflow demo --keep --instance {instance} --serve")


# --- automation: rules, journeys, customers ---------------------------------------------


def _parse_at(value: str | None) -> datetime:
    """A ``--at`` timestamp (ISO; a naive one is in the settings' zone) as aware UTC, or now."""
    if not value:
        return _now()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"`{value}` is not a timestamp like 2026-03-01T10:00 or 2026-03-01 10:00+08:00",
                                 param_hint="--at") from None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(_ctx_timezone()))
    return moment.astimezone(UTC)


def _ctx_timezone() -> str:
    obj = click.get_current_context().find_object(Context)
    return obj.settings.timezone if obj is not None else "Asia/Shanghai"


class _Automation:
    """The published definitions and the automation policy, for one command."""

    def __init__(self, obj: Context):
        from engine.automation.configure import policy_from_settings
        from engine.registry import DefinitionRegistry

        self.session_factory = obj.session_factory()
        self.registry = DefinitionRegistry(self.session_factory)
        self.definitions = self.registry.current()
        if not self.definitions.rules:
            raise click.ClickException("no rules are published: run `promoflow publish` first")
        try:
            self.policy = policy_from_settings(self.definitions, obj.settings, self.registry)
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None

    def rule(self, rule_id: str):
        from engine.definitions.errors import unknown

        rule = self.definitions.rules.get(rule_id)
        if rule is None:
            raise click.ClickException(unknown("rule", rule_id, self.definitions.rules))
        return rule


def _local(value: datetime | None, tz: str) -> str:
    if value is None:
        return "-"
    from zoneinfo import ZoneInfo

    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


@main.group()
def rules() -> None:
    """Automation rules: list, preview, run."""


@rules.command("list")
@click.option("--at", "at", default=None, help="As if at this time (ISO; default: now).")
@pass_ctx
def rules_list(obj: Context, at: str | None) -> None:
    """Every published rule: trigger, next run, the last 30 days' activity per day."""
    from engine.automation.overview import describe_trigger, next_run, recent_activity

    auto = _Automation(obj)
    tz = obj.settings.timezone
    now = _parse_at(at)
    with auto.session_factory() as session:
        for rule in sorted(auto.definitions.rules.values(), key=lambda r: r.id):
            version = auto.registry.version_of("rule", rule.id)
            state = "" if rule.enabled else "  [disabled]"
            click.echo(f"{rule.id} v{version}  {rule.title}{state}")
            click.echo(f"  trigger:  {describe_trigger(rule, 'en')}")
            click.echo(f"  next run: {_local(next_run(rule, now), tz)}")
            activity = recent_activity(session, rule.id, now=now, tz=tz)
            if not activity:
                click.echo("  last runs: none")
            for act in activity:
                c = act.counters
                click.echo(f"  {act.day}  runs {act.runs}  entered {c['entered']}  sent {c['sent']}  "
                           f"skipped: consent {c['skipped_consent']} caps {c['skipped_cap']}  "
                           f"deferred: quiet hours {c['deferred_quiet']} caps {c['deferred_cap']}")


@rules.command("preview")
@click.argument("rule_id")
@click.option("--days", default=7, show_default=True, type=click.IntRange(0, 90), help="Days to forecast.")
@click.option("--at", "at", default=None, help="Start the simulated clock at this time (default: now).")
@click.option("--sms-price", type=float, default=None,
              help="CNY per SMS for the cost column (default: settings sms_price, 0.045).")
@pass_ctx
def rules_preview(obj: Context, rule_id: str, days: int, at: str | None, sms_price: float | None) -> None:
    """Audience count and sample of RULE_ID, and what it would send each day
    over the next days (simulated clock, per channel, SMS cost). Nothing is written."""
    from engine.automation.preview import preview_rule

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    now = _parse_at(at)
    price = sms_price if sms_price is not None else obj.settings.sms_price
    result = preview_rule(auto.session_factory, rule.id, now=now, definitions=auto.definitions, days=days,
                          policy=auto.policy, sms_price=price)
    click.echo(f"{rule.id}  {rule.title}")
    click.echo(f"Audience now: {result.audience_count} customer(s)")
    for row in result.sample:
        click.echo(f"  #{row['id']:<8} {row['name'] or '-':<12} {row['phone'] or '-':<14} {row['email'] or '-':<28} "
                   f"{row['city'] or '-'}")
    if result.event_triggered:
        click.echo("Triggered by events: no forecast (it runs when the events arrive).")
        return
    channels = result.channels
    header = f"{'DAY':<11} {'ENTERED':>8} " + " ".join(f"{c.upper():>7}" for c in channels) + \
        f" {'COUPONS':>8} {'SMS COST':>9}"
    click.echo(f"Forecast, {days} day(s) from {_local(now, rule.timezone)} ({rule.timezone}); nothing was written:")
    click.echo(header)
    for day in result.days:
        cells = " ".join(f"{day.messages.get(c, 0):>7}" for c in channels)
        click.echo(f"{day.day.isoformat():<11} {day.entered:>8} {cells} {day.coupons:>8} {day.sms_cost:>9}")
    click.echo(f"Total: {result.total_messages} message(s), SMS cost {result.total_sms_cost} CNY "
               f"at {result.sms_price} CNY per SMS.")


@rules.command("run")
@click.argument("rule_id")
@click.option("--at", "at", default=None, help="Run as if at this time (ISO; default: now).")
@pass_ctx
def rules_run(obj: Context, rule_id: str, at: str | None) -> None:
    """Run RULE_ID once now (or as if at --at): enter its audience, then
    advance its due journeys. Running it again in the same period enters nobody."""
    from engine.automation.runner import run_rule
    from engine.automation.versions import StoredRules, rule_lookup

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    now = _parse_at(at)
    try:
        # Journeys pinned to an older version of the rule advance on that version's spec.
        report = run_rule(auto.session_factory, rule.id, now=now, definitions=auto.definitions, policy=auto.policy,
                          rule_of=rule_lookup(auto.definitions, auto.policy, StoredRules(auto.session_factory)))
    except TypeError as exc:
        raise click.ClickException(str(exc)) from None
    c = report.counters
    click.echo(f"{rule.id} at {_local(now, rule.timezone)}: entered {report.entered}, advanced {c.advanced}, "
               f"sent {c.sent}, skipped (consent {c.skipped_consent}, caps {c.skipped_cap}, other {c.skipped_other}), "
               f"deferred (quiet hours {c.deferred_quiet}, caps {c.deferred_cap}), completed {c.completed}, "
               f"exited {c.exited}, errors {c.errors}.")


@main.group()
def journeys() -> None:
    """Subjects in rules' journeys."""


@journeys.command("show")
@click.argument("rule_id")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(0, 1000), help="Sample size.")
@pass_ctx
def journeys_show(obj: Context, rule_id: str, limit: int) -> None:
    """Counts of RULE_ID's journeys by version, step and status, and the latest ones."""
    from engine.automation.overview import journey_counts, journey_sample

    auto = _Automation(obj)
    rule = auto.rule(rule_id)
    tz = obj.settings.timezone
    with auto.session_factory() as session:
        counts = journey_counts(session, rule.id)
        sample = journey_sample(session, rule.id, limit)
    if not counts:
        click.echo(f"{rule.id}: no journeys yet.")
        return
    click.echo(f"{rule.id}: {sum(n for *_, n in counts)} journey(s)")
    click.echo(f"{'VERSION':>7}  {'STEP':<24} {'STATUS':<10} {'COUNT':>8}")
    for version, step, status, n in counts:
        click.echo(f"{version:>7}  {step or '-':<24} {status:<10} {n:>8}")
    click.echo(f"Latest {len(sample)}:")
    for j in sample:
        click.echo(f"  #{j['id']:<8} {j['subject_type']} {j['subject_id']:<8} v{j['rule_version']} "
                   f"{j['step_id'] or '-':<20} {j['status']:<9} due {_local(j['due_at'], tz)}  "
                   f"entered {_local(j['entered_at'], tz)}")


@main.group()
def customers() -> None:
    """Customers and their orders."""


def _run_import(file: str, progress: bool | None, run: Any) -> Any:
    """Run one CSV import with a progress bar over FILE's rows: ``run(update)``
    does the import and returns its report. An unreadable file (encoding,
    header) is a one-line error, never a traceback; bad rows are listed by
    line and the file's encoding is named when it was not UTF-8."""
    from tqdm import tqdm

    from engine.customers_import import ImportError_

    if progress is None:
        progress = sys.stderr.isatty()
    with open(file, "rb") as fh:
        total = max(sum(1 for _ in fh) - 1, 0)
    bar = tqdm(total=total, unit="row", desc="Importing", disable=not progress, file=sys.stderr)
    try:
        report = run(bar.update)
    except ImportError_ as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    finally:
        bar.close()
    for error in report.errors:
        click.echo(f"{file}:{error.line}: {error.reason}", err=True)
    return report


@customers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only when stderr is a terminal).")
@click.option("--batch", default=2000, show_default=True, type=click.IntRange(1, 100_000), hidden=True)
@click.option("--history", is_flag=True,
              help="A back-fill of past customers: no customer.registered events, so no rule acts and nothing is sent.")
@click.option("--encoding", default=None, help="The file's encoding (default: detected; UTF-8 or GB18030/GBK).")
@pass_ctx
def customers_import(obj: Context, file: str, progress: bool | None, batch: int, history: bool,
                     encoding: str | None) -> None:
    """Import customers and orders from a CSV FILE (UTF-8 or GBK, header row).

    Columns: external_id, member_no, wecom_userid, name, phone, email, gender, city, level, birthday,
    registered_at, contract_end, timezone, tags, consent_sms, consent_email,
    consent_wecom, order_id, order_amount, order_placed_at, order_channel,
    order_campaign, order_status. Rows are merged into customers by
    external_id, phone or email; bad rows are listed with their line number
    and skipped; the good ones are kept.
    """
    from engine.customers_import import import_customers

    report = _run_import(file, progress, lambda update: import_customers(
        obj.session_factory(), file, now=_now(), timezone=obj.settings.timezone, batch=batch, progress=update,
        history=history, encoding=encoding))
    if report.encoding != "UTF-8":
        click.echo(f"Read as {report.encoding}.")
    click.echo(f"Imported {report.imported} of {report.rows} row(s): {report.customers_new} new customer(s), "
               f"{report.customers_updated} updated, {report.orders_new} new order(s)"
               f"{f' ({report.orders_known} already stored)' if report.orders_known else ''}, "
               f"{report.tags_added} tag(s) added; {len(report.errors)} row(s) skipped."
               + (" History: no events emitted." if history else ""))



@main.group()
def events() -> None:
    """Custom events (custom.*) for customers."""


@events.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only when stderr is a terminal).")
@click.option("--history", is_flag=True, help="A back-fill: store the events as handled; no rule acts, nothing is sent.")
@click.option("--encoding", default=None, help="The file's encoding (default: detected; UTF-8 or GB18030/GBK).")
@pass_ctx
def events_import(obj: Context, file: str, progress: bool | None, history: bool, encoding: str | None) -> None:
    """Import custom events from a CSV FILE: columns name, customer_id or an
    identity (external_id, member_no, wecom_userid, phone, email),
    idempotency_key, occurred_at; other columns are the event's data."""
    from engine.events_import import import_events
    from engine.events_in import listened_events
    from engine.registry import DefinitionRegistry

    sf = obj.session_factory()
    listened = listened_events(DefinitionRegistry(sf).current().rules.values())
    report = _run_import(file, progress, lambda update: import_events(
        sf, file, now=_now(), listened=listened, timezone=obj.settings.timezone, history=history,
        encoding=encoding, progress=update))
    for warning in sorted(report.warnings):
        click.echo(f"warning: {warning}", err=True)
    if report.encoding != "UTF-8":
        click.echo(f"Read as {report.encoding}.")
    click.echo(f"Imported {report.created} event(s) of {report.rows} row(s)"
               f"{f', {report.duplicates} already stored' if report.duplicates else ''}; "
               f"{len(report.errors)} row(s) skipped."
               + (" History: stored as handled, no rule acts." if history else ""))


@main.group()
def orders() -> None:
    """Orders (also pushed through /api/v1/orders)."""


@orders.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--history", is_flag=True,
              help="A back-fill of past orders: aggregates and RFM are updated, no event is emitted, nothing is sent.")
@click.option("--source", default="import", show_default=True, help="Source of rows without a `source` cell.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: only when stderr is a terminal).")
@pass_ctx
def orders_import(obj: Context, file: str, history: bool, source: str, progress: bool | None) -> None:
    """Import orders from a CSV FILE (UTF-8 or GBK/GB18030, header row); the
    columns are listed in engine/orders_import.py (order_id, placed_at, a
    customer column, amount or line columns …). Bad rows are listed with their
    line number and skipped; the good ones are kept."""
    from engine.orders_import import import_orders

    report = _run_import(file, progress, lambda update: import_orders(
        obj.session_factory(), file, now=_now(), timezone=obj.settings.timezone, history=history, source=source,
        locale=obj.settings.locale, progress=update))
    click.echo(f"Imported {report.created} new order(s) of {report.orders} in {report.rows} row(s) "
               f"({report.encoding}){f', {report.existing} already stored' if report.existing else ''}"
               f"{', history: no events' if history else ''}; {len(report.errors)} row(s) skipped.")


from web.cli_ops import register as _register_ops; _register_ops(main)  # noqa: E402,E702 backup, restore, prune (issue 17)

if __name__ == "__main__":  # pragma: no cover
    main()
