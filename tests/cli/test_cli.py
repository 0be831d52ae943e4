"""The promoflow CLI end to end: validate, publish (versions, all or nothing),
definitions list/show, db upgrade, init; on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.library import library_paths
from engine.storage.database import make_engine, make_session_factory
from engine.storage.models import Definition
from web.cli import main

ROLE = "kind: role\nid: staff\ntitle: 员工\n"
FORM = """kind: form
id: visit
title: 门店拜访
submit_roles: [staff]
fields:
  - {key: store, label: 门店, type: text, required: true}
  - {key: visited_on, label: 日期, type: date}
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("PROMOFLOW_DATABASE_URL", raising=False)
    return CliRunner()


def _project(tmp_path: Path, form: str = FORM) -> Path:
    folder = tmp_path / "defs"
    folder.mkdir(exist_ok=True)
    (folder / "roles.yaml").write_text(ROLE, encoding="utf-8")
    (folder / "visit.yaml").write_text(form, encoding="utf-8")
    return folder


def _count(url: str) -> int:
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Definition))
    finally:
        engine.dispose()


def test_validate_shipped_library_passes(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", *map(str, library_paths())])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ") and "form" in result.output and "rule" in result.output


def test_validate_reports_every_problem_one_per_line(runner: CliRunner, tmp_path: Path) -> None:
    folder = _project(tmp_path, FORM.replace("type: date", "type: dat").replace("[staff]", "[staf]"))
    result = runner.invoke(main, ["validate", str(folder)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [
        "defs/visit.yaml:4:16: unknown role `staf`; did you mean `staff`?",
        "defs/visit.yaml:7:40: `type` is `dat`, which is not one of: text, textarea, integer, number, money, date, "
        "datetime, select, multiselect, checkbox, phone, email, url, customer, user, file, table; did you mean `date`?",
        "2 problem(s) found.",
    ]


def test_validate_missing_path(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", "nowhere"])
    assert result.exit_code == 1
    assert "nowhere:1:1: no such file or folder" in result.stderr


def test_publish_versions_and_show(runner: CliRunner, tmp_path: Path, db_url: str) -> None:
    folder = _project(tmp_path)
    args = ["--database-url", db_url]
    first = runner.invoke(main, [*args, "publish", str(folder), "--by", "alice"])
    assert first.exit_code == 0, first.output
    assert "Published: 2 new, 0 changed, 0 unchanged." in first.output

    again = runner.invoke(main, [*args, "publish", str(folder)])
    assert "Published: 0 new, 0 changed, 2 unchanged." in again.output

    (folder / "visit.yaml").write_text(FORM.replace("门店拜访", "门店巡店"), encoding="utf-8")
    changed = runner.invoke(main, [*args, "publish", str(folder), "--by", "bob"])
    assert "changed   form         visit v2" in changed.output
    assert "Published: 0 new, 1 changed, 1 unchanged." in changed.output

    listed = runner.invoke(main, [*args, "definitions", "list"])
    assert listed.exit_code == 0
    rows = {line.split()[1]: line.split()[2] for line in listed.output.splitlines()[1:]}
    assert rows == {"visit": "2", "staff": "1"}

    latest = runner.invoke(main, [*args, "definitions", "show", "visit"])
    assert "title: 门店巡店" in latest.output and "v2 of 2" in latest.output and "by bob" in latest.output
    old = runner.invoke(main, [*args, "definitions", "show", "visit", "--version", "1"])
    assert "title: 门店拜访" in old.output and "v1 of 2" in old.output
    missing = runner.invoke(main, [*args, "definitions", "show", "visit", "--version", "9"])
    assert missing.exit_code == 1 and "no published definition `visit version 9`" in missing.output


def test_publish_with_one_broken_file_stores_nothing(runner: CliRunner, tmp_path: Path, db_url: str) -> None:
    folder = _project(tmp_path)
    (folder / "zz_broken.yaml").write_text("kind: form\nid: broken\ntitle: x\nfields:\n  - {key: a, type: txt}\n",
                                           encoding="utf-8")
    result = runner.invoke(main, ["--database-url", db_url, "publish", str(folder)])
    assert result.exit_code == 1
    assert "defs/zz_broken.yaml:5:20:" in result.stderr and "Nothing was published." in result.stderr
    assert _count(db_url) == 0


def test_publish_shipped_library_on_both_databases(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(main, ["--database-url", db_url, "publish", *map(str, library_paths())])
    assert result.exit_code == 0, result.output
    assert _count(db_url) > 20


def test_db_upgrade_and_current(runner: CliRunner, db_url: str) -> None:
    before = runner.invoke(main, ["--database-url", db_url, "db", "current"])
    assert "empty" in before.output
    result = runner.invoke(main, ["--database-url", db_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    after = runner.invoke(main, ["--database-url", db_url, "db", "current"])
    assert after.output.strip() and "empty" not in after.output


def test_init_copies_the_library_and_validates(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["init", "mine"])
    assert result.exit_code == 0, result.output
    for name in ("forms", "workflows", "config"):
        assert (tmp_path / "mine" / name).is_dir()
    refused = runner.invoke(main, ["init", "mine"])
    assert refused.exit_code == 1 and "not empty" in refused.output
    # inside the project, validate defaults to its own folders
    (tmp_path / "mine" / "forms" / "extra.yaml").write_text("kind: form\nid: x\n", encoding="utf-8")
    import os
    os.chdir(tmp_path / "mine")
    result = runner.invoke(main, ["validate"])
    assert result.exit_code == 1
    assert "forms/extra.yaml:1:1: missing required key `title`" in result.stderr


def test_demo_publishes_into_a_fresh_instance(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["demo", "--instance", "demo-instance", "--no-serve", "--customers", "200", "--days", "0"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo-instance" / "promoflow.sqlite").is_file()
    assert "winback_90d" in result.output and "activity_request" in result.output
    assert f"sqlite:///{tmp_path / 'demo-instance' / 'promoflow.sqlite'}" in result.output
    # a second run starts fresh: everything is new again
    again = runner.invoke(main, ["demo", "--instance", "demo-instance", "--no-serve", "--customers", "200", "--days", "0"])
    assert "0 changed, 0 unchanged" in again.output
    shutil.rmtree(tmp_path / "demo-instance")
