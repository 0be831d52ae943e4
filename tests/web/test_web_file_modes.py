"""Personal data at rest: every file and folder the product creates is
owner-only, 0600 files in 0700 folders (issue 16, item 3)."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from click.testing import CliRunner
from flask import Flask
from web_support import csrf_from, valid_activity_form

from web import create_app
from web.cli import main


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_instance_keeps_database_wal_shm_and_secret_owner_only(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(instance)})
    # A write through the product fills the WAL (and so creates the WAL and SHM files).
    assert app.test_client().get("/healthz").status_code == 200
    db = instance / "promoflow.sqlite"
    assert _mode(instance) == 0o700
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), instance / "secret_key"):
        assert path.exists(), path
        assert _mode(path) == 0o600, (path, oct(_mode(path)))
    app.extensions["promoflow"].db_engine.dispose()


def test_an_instance_made_world_readable_before_is_tightened_on_start(tmp_path: Path) -> None:
    instance = tmp_path / "old"
    create_app({"TESTING": True, "INSTANCE_PATH": str(instance)}).extensions["promoflow"].db_engine.dispose()
    db = instance / "promoflow.sqlite"
    os.chmod(instance, 0o755)
    os.chmod(db, 0o644)
    create_app({"TESTING": True, "INSTANCE_PATH": str(instance)}).extensions["promoflow"].db_engine.dispose()
    assert _mode(instance) == 0o700
    assert _mode(db) == 0o600


def test_uploads_are_kept_owner_only(app: Flask, login) -> None:
    client = login("staff")
    page = client.get("/forms/activity_request/new")
    data = {**valid_activity_form(), "csrf_token": csrf_from(page.text),
            "attachments": (io.BytesIO(b"%PDF-1.4 plan"), "plan.pdf", "application/pdf")}
    response = client.post("/forms/activity_request/new", data=data, content_type="multipart/form-data")
    assert response.status_code in (302, 303), response.text
    folder = Path(app.config["UPLOAD_FOLDER"])
    files = list(folder.iterdir())
    assert len(files) == 1
    assert _mode(folder) == 0o700
    assert _mode(files[0]) == 0o600


def test_a_backup_is_owner_only(app: Flask, db_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "backups" / "promoflow.backup"
    made = CliRunner().invoke(main, ["--database-url", db_url, "backup", str(dest)])
    assert made.exit_code == 0, made.output
    assert _mode(dest.parent) == 0o700
    assert _mode(dest) == 0o600
