"""The wheel carries the engine, its schemas and migrations, the web pages and
assets, and the shipped definitions, so `pip install promoflow` works without a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_contains_code_schemas_migrations_and_library(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("promoflow-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "engine/definitions/schemas/form.schema.json" in names
    assert "engine/storage/migrations/versions/0001_initial.py" in names
    assert "engine/storage/migrations/env.py" in names
    assert "engine/data/common_passwords.txt" in names  # the password policy reads it
    assert "web/cli.py" in names
    # The web app's pages and assets, or an installed app answers every page with a 500.
    web_files = {p.relative_to(ROOT).as_posix() for folder in ("web/templates", "web/static")
                 for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert "web/templates/base.html" in web_files
    for path in web_files:
        assert path in names, path
    shipped = {p.relative_to(ROOT).as_posix() for folder in ("forms", "workflows", "config")
               for p in (ROOT / folder).rglob("*") if p.suffix in (".yaml", ".json")}
    assert shipped, "the library is empty"
    for path in shipped:
        assert f"promoflow_library/{path}" in names, path
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "promoflow = web.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
