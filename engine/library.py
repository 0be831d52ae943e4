"""Where the shipped definitions (the template library) live.

In a source checkout (and an editable install) they are the top-level
``forms/``, ``workflows/`` and ``config/`` folders next to ``engine/``; in an
installed wheel they are package data under ``promoflow_library``.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

FOLDERS = ("forms", "workflows", "config")


def library_root() -> Path:
    """The folder that holds forms/, workflows/ and config/."""
    checkout = Path(__file__).resolve().parent.parent
    if all((checkout / name).is_dir() for name in FOLDERS):
        return checkout
    spec = find_spec("promoflow_library")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    raise FileNotFoundError("the shipped definitions (forms/, workflows/, config/) are not installed")


def library_paths() -> list[Path]:
    """The shipped definition folders, in load order."""
    root = library_root()
    return [root / name for name in FOLDERS]
