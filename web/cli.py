"""The ``promoflow`` command line.

Every command builds its settings when it runs (never at import time) and
talks to the engine only; errors a user can fix are printed one per line and
exit 1, never a traceback.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

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
@pass_ctx
def publish(obj: Context, paths: tuple[str, ...], by: str | None) -> None:
    """Validate definitions, then store all of them in one transaction.

    Each changed definition gets a new version; unchanged ones keep theirs. If
    anything is invalid, nothing is stored.
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
    click.echo(f"Published: {report.count('new')} new, {report.count('changed')} changed, "
               f"{report.count('unchanged')} unchanged.")


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

    return AccountService(obj.session_factory())


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
                                 email=email, manager=manager, locale=locale, check_roles=False)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created user {user.username} (id {user.id}) with roles: {', '.join(sorted(user.roles)) or '-'}")


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
        token = _accounts(obj).create_token(user, now=_now(), name=label)
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
        count = _accounts(obj).revoke_tokens(user, now=_now(), name=label)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Revoked {count} token(s) of {user}.")


def _serve(settings: Settings, host: str, port: int, threads: int, *, scheduler: bool = False) -> None:
    """Run the web app under waitress until interrupted (with the scheduler
    in-process when asked: the embedded, one-process setup)."""
    from waitress import serve as waitress_serve

    from web import create_app

    app = create_app(settings=settings)
    if scheduler:
        from web.worker import scheduler_init_app

        scheduler_init_app(app)
        click.echo("Scheduler running in this process (rules, journeys, approval reminders).")
    click.echo(f"Serving on http://{host}:{port}/ (Ctrl+C to stop)")
    waitress_serve(app, host=host, port=port, threads=threads, ident="promoflow")


@main.command()
@click.option("--interval", default=30.0, show_default=True, type=float, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Run one tick now and exit (cron-style hosting).")
@pass_ctx
def worker(obj: Context, interval: float, once: bool) -> None:
    """Run the scheduler: due rules, journeys, events, approval reminders.

    Only one worker per database is active (PostgreSQL advisory lock, or a
    lock file beside the SQLite database); others stand by and take over.
    """
    import signal
    import threading

    from web import create_app
    from web.worker import scheduler_init_app

    app = create_app(settings=obj.settings)
    host = scheduler_init_app(app, interval=interval, start=not once)
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@pass_ctx
def serve(obj: Context, host: str, port: int, threads: int) -> None:
    """Serve the web app and API (waitress) on the configured database."""
    _serve(obj.settings, host, port, threads)


#: Demo users: the role ids of the shipped definitions plus admin; password <name>123.
def _demo_users(accounts, role_ids: list[str], now: datetime) -> list[tuple[str, str, list[str]]]:
    made = []
    for name in ["admin", *role_ids]:
        password = f"{name}123"
        roles = [name]
        accounts.add_user(name, roles=roles, password=password, now=now, check_roles=False)
        made.append((name, password, roles))
    return made


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
def demo(instance: str, keep: bool, customers: int, serve_app: bool | None, host: str, port: int) -> None:
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
    settings = load_settings(overrides={"instance_path": str(folder), "database_url": ""}, environ={})
    engine = make_engine(settings.database_url)
    upgrade(engine)
    session_factory = make_session_factory(engine)
    now = _now()
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
    if serve_app is None:
        serve_app = sys.stdin.isatty() and sys.stdout.isatty()
    if serve_app:
        click.echo("Sign in as staff / staff123 to fill in a promotion activity request.")
        _serve(settings, host, port, threads=8, scheduler=True)
    else:
        click.echo(f"Start the web app with: promoflow demo --keep --instance {instance} --serve")


if __name__ == "__main__":  # pragma: no cover
    main()
