"""The dependency rules of docs/architecture.md, read from the source with
``ast`` (no import runs):

* the engine imports neither ``connectors`` nor ``web`` — not even by a
  module name in a string — so it runs, and is tested, without them;
* SQL is built only in ``engine/storage``: elsewhere in the engine the one
  SQLAlchemy import allowed is the session type the services pass around
  (``from sqlalchemy.orm import Session, sessionmaker``);
* connectors never import the web app;
* no module imports another module's private (``_name``) names: what is
  shared gets a public name where it is defined.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("engine", "web", "connectors")

#: Private names still imported across modules. The steps rewrite of issue 13
#: removed the last (engine/automation's); the list may only shrink: an entry
#: that no longer occurs fails the test until it is removed.
PRIVATE_ALLOWED: frozenset[tuple[str, str, str]] = frozenset()

#: The only SQLAlchemy names the engine outside engine/storage may import.
SESSION_TYPES = frozenset({"Session", "sessionmaker"})


@dataclass(frozen=True)
class Import:
    file: str      # relative to the repository root
    line: int
    module: str    # absolute module name
    names: tuple[str, ...]  # imported names ("from m import a, b"); empty for "import m"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = _module_of(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[:len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts and "__pycache__" not in path.parts:
                yield path


def _imports(*packages: str) -> Iterator[Import]:
    for path in _sources(*packages):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(rel, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                yield Import(rel, node.lineno, _absolute(path, node), tuple(a.name for a in node.names))


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_scan_sees_the_imports_it_judges() -> None:
    """The walker itself: relative imports resolve, and known imports are found."""
    found = {(i.file, i.module) for i in _imports("engine", "web")}
    assert ("engine/outbox.py", "engine.storage") in found           # from engine.storage import outbox_repo
    assert ("web/api.py", "web") in found                           # from . import services
    assert ("engine/definitions/build.py", "engine.definitions") in found  # from . import specs as s


def test_the_engine_imports_neither_connectors_nor_web() -> None:
    bad = [f"{i.file}:{i.line} imports {i.module}" for i in _imports("engine") if _top(i.module) in ("connectors", "web")]
    assert not bad, "\n".join(bad)


def test_the_engine_names_no_connector_or_web_module_in_a_string() -> None:
    """``importlib.import_module("connectors.registry")`` is an import too."""
    bad = []
    for path in _sources("engine"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                value = node.args[0].value
                if name in ("import_module", "__import__") and isinstance(value, str) \
                        and _top(value) in ("connectors", "web"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} loads {value}")
    assert not bad, "\n".join(bad)


def test_sql_is_built_only_in_engine_storage() -> None:
    bad = []
    for i in _imports("engine"):
        if _top(i.module) != "sqlalchemy" or i.file.startswith("engine/storage/"):
            continue
        if i.module == "sqlalchemy.orm" and set(i.names) <= SESSION_TYPES:
            continue
        bad.append(f"{i.file}:{i.line} imports {', '.join(i.names) or i.module} from {i.module}")
    assert not bad, "SQL belongs in engine/storage:\n" + "\n".join(bad)


def test_connectors_do_not_import_the_web_app() -> None:
    bad = [f"{i.file}:{i.line} imports {i.module}" for i in _imports("connectors") if _top(i.module) == "web"]
    assert not bad, "\n".join(bad)


def test_no_private_names_are_imported_across_modules() -> None:
    found = set()
    for i in _imports(*PACKAGES):
        if _top(i.module) not in PACKAGES:
            continue
        for name in i.names:
            if name.startswith("_") and not name.startswith("__"):
                found.add((i.file, i.module, name))
    bad = sorted(found - PRIVATE_ALLOWED)
    assert not bad, "give these a public name where they are defined:\n" + "\n".join(
        f"{file}: from {module} import {name}" for file, module, name in bad)
    stale = sorted(PRIVATE_ALLOWED - found)
    assert not stale, "gone: remove from PRIVATE_ALLOWED:\n" + "\n".join(map(str, stale))
