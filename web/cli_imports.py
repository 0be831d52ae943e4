"""CSV imports: ``customers import``, ``events import`` and ``orders import``."""

from __future__ import annotations

import sys
from typing import Any

import click

from web.cli import Context, main, pass_ctx, utc_now


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
        obj.session_factory(), file, now=utc_now(), timezone=obj.settings.timezone, batch=batch, progress=update,
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
        sf, file, now=utc_now(), listened=listened, timezone=obj.settings.timezone, history=history,
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
              help="A back-fill of past orders: aggregates and RFM are updated, no event is emitted, nothing is sent. "
                   "Orders earn points under the published points policy; lots past their validity lapse at the "
                   "next expiry tick (docs/loyalty.md).")
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
        obj.session_factory(), file, now=utc_now(), timezone=obj.settings.timezone, history=history, source=source,
        locale=obj.settings.locale, progress=update))
    click.echo(f"Imported {report.created} new order(s) of {report.orders} in {report.rows} row(s) "
               f"({report.encoding}){f', {report.existing} already stored' if report.existing else ''}"
               f"{', history: no events' if history else ''}; {len(report.errors)} row(s) skipped.")
