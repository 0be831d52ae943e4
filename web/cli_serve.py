"""Commands that run the product: ``serve`` (waitress), ``worker`` (the
scheduler) and ``demo`` (a demo installation played on a simulated clock)."""

from __future__ import annotations

import shutil
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click

from engine.definitions.errors import DefinitionsInvalid
from engine.library import library_paths
from engine.settings import Settings, load_settings

from web.cli import Context, main, pass_ctx, print_errors, utc_now


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
    app.wsgi_app = gate(app.wsgi_app, limit)  # type: ignore[method-assign,assignment]
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
    for line in report.campaign_lines():  # issue 14: what the campaign dashboard opens on
        click.echo(line)
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
    now = utc_now() - timedelta(days=days if not existed else 0)
    try:
        report = publish_paths(session_factory, library_paths(), now=now, by="demo")
    except DefinitionsInvalid as exc:
        print_errors(exc.errors)
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
