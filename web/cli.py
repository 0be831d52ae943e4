"""The ``promoflow`` command line.

Every command builds its settings when it runs (never at import time) and
talks to the engine only; errors a user can fix are printed one per line and
exit 1, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.library import FOLDERS, library_paths
from engine.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker


def utc_now() -> datetime:
    return datetime.now(UTC)


class Context:
    """Lazily built settings and database handles, one per CLI invocation."""

    def __init__(self, settings_file: str | None, database_url: str | None):
        self._settings_file = settings_file
        self._database_url = database_url
        self._settings: Settings | None = None
        self._session_factory: sessionmaker[Session] | None = None

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
    from engine.private_files import restrict_umask

    restrict_umask()  # databases, backups, exports and keys are owner-only (issue 16)
    ctx.obj = Context(settings_file, database_url)


def print_errors(errors) -> None:
    for error in errors:
        click.echo(str(error), err=True)
    click.secho(f"{len(errors)} problem(s) found.", fg="red", err=True)


# The commands, one module per group. Imported last: they decorate `main` and
# use Context and pass_ctx defined above.
from web import cli_accounts, cli_definitions, cli_imports, cli_rules, cli_serve  # noqa: E402,F401

from web.cli_ops import register as _register_ops; _register_ops(main)  # noqa: E402,E702 backup, restore, prune (issue 17)

if __name__ == "__main__":  # pragma: no cover
    # `python -m web.cli`: run the imported module's group, on which the
    # command modules registered, not this __main__ copy of it.
    from web.cli import main as cli_main

    cli_main()
