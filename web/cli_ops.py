"""Operations commands of the ``promoflow`` CLI (issue 17): ``backup``,
``restore`` and ``prune``. Registered on the main group by :func:`register`."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    from web.cli import Context, pass_ctx

    @main.command()
    @click.argument("dest", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="Replace DEST when it exists.")
    @pass_ctx
    def backup(obj: Context, dest: str, force: bool) -> None:
        """Write a backup of the database to DEST, safe while the app runs
        (SQLite: online backup; PostgreSQL: pg_dump custom format)."""
        from pathlib import Path

        from engine.storage.backup import BackupError, backup as do_backup

        if Path(dest).exists() and not force:
            raise click.ClickException(f"{dest} exists; pass --force to replace it")
        try:
            written = do_backup(obj.settings.database_url, dest)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"Backup written to {written} ({written.stat().st_size} bytes).")

    @main.command()
    @click.argument("src", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="Replace the content of a database that is not empty.")
    @pass_ctx
    def restore(obj: Context, src: str, force: bool) -> None:
        """Restore the database from the backup SRC (stop the worker first).
        Refuses a database that holds data unless --force is given."""
        from engine.storage.backup import BackupError, restore as do_restore

        try:
            do_restore(obj.settings.database_url, src, force=force)
        except BackupError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"Restored from {src}. Run `promoflow db upgrade` if the backup is older than this version.")

    @main.command()
    @click.option("--dry-run", is_flag=True, help="Only count what would be pruned.")
    @click.option("--at", "at", default=None, help="As if at this time (ISO; default: now).")
    @pass_ctx
    def prune(obj: Context, dry_run: bool, at: str | None) -> None:
        """Prune old processed events, sent message bodies and send attempts
        after the `retention` setting's windows. The audit log is never pruned."""
        from web.cli_rules import parse_at
        from web.retention import describe, run_prune

        sf = obj.session_factory()
        click.echo("Retention: " + ", ".join(f"{k} {v}" for k, v in obj.settings.retention.items())
                   + (" (dry run)" if dry_run else ""))
        run_prune(sf, obj.settings.retention, parse_at(at), dry_run=dry_run,
                  progress=lambda step: click.echo(describe(step, dry_run=dry_run)))


__all__ = ["register"]
