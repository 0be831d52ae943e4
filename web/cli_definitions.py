"""Commands that check and store definitions and the database: ``validate``,
``publish``, ``definitions list|show``, ``db upgrade|current`` and ``init``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
import yaml

from engine.definitions.errors import DefinitionsInvalid
from engine.definitions.loader import load_paths
from engine.library import FOLDERS, library_root

from web.cli import Context, main, pass_ctx, print_errors, utc_now


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@pass_ctx
def validate(obj: Context, paths: tuple[str, ...]) -> None:
    """Check definitions (default: the project's forms/, workflows/, config/).

    Prints one problem per line as FILE:LINE:COL: MESSAGE and exits 1 if any.
    """
    result = load_paths(list(paths) or obj.default_paths())
    if result.errors:
        print_errors(result.errors)
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
        report = publish_paths(obj.session_factory(), list(paths) or obj.default_paths(), now=utc_now(), by=by)
    except DefinitionsInvalid as exc:
        print_errors(exc.errors)
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
        affected = apply_policy(session, rule.id, rule, version, choice, now=utc_now())
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
