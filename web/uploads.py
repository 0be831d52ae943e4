"""Uploaded files of a submission: kept only if the submission is, and
referred to only by the record that uploaded them.

Two findings of issue 16 live here. A rejected submission used to leave its
files in the uploads folder (three rejected posts, 3 MB of orphans): the files
written for one request are now removed again unless the record was saved.
And a submission could carry a file reference of its own making (the page's
hidden "kept file" input, or a JSON object in the API) naming another record's
file, which was then served through the forger's record: a reference is now
accepted only if this request uploaded it or the record already held it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.definitions.specs import FormSpec
from engine.forms.errors import FieldError, ValidationFailed


@dataclass
class Uploads:
    """The files written to disk for one request, and their references by id."""

    written: list[Path] = field(default_factory=list)
    refs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, path: Path | None, ref: dict[str, Any]) -> None:
        """A reference made by this request; ``path`` if its file was written
        (one that breaks the field's type or size is not, and its reference is
        left for the form's validation to refuse with the limit it broke)."""
        if path is not None:
            self.written.append(path)
        self.refs[str(ref["id"])] = ref

    def discard(self) -> None:
        """Remove every file written for this request (the submission was refused)."""
        for path in self.written:
            path.unlink(missing_ok=True)
        self.written.clear()
        self.refs.clear()

    @contextmanager
    def kept_on_success(self) -> Iterator[None]:
        """Keep the files only if the block (the save) succeeds."""
        try:
            yield
        except BaseException:
            self.discard()
            raise


def _file_values(spec: FormSpec, data: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field path, value) of every file field in ``data``: top level and in table rows."""
    for f in spec.fields:
        if f.type == "file" and f.key in data:
            yield from _items(f.key, data[f.key])
        elif f.type == "table" and isinstance(data.get(f.key), list):
            subs = [c for c in f.fields if c.type == "file"]
            for i, row in enumerate(data[f.key]):
                if isinstance(row, Mapping):
                    for c in subs:
                        if c.key in row:
                            yield from _items(f"{f.key}[{i}].{c.key}", row[c.key])


def _items(path: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, list):
        for v in value:
            yield path, v
    elif value is not None:
        yield path, value


def stored_refs(spec: FormSpec, data: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every file reference a stored record holds, by file id."""
    return {str(v["id"]): dict(v) for _, v in _file_values(spec, data or {})
            if isinstance(v, Mapping) and isinstance(v.get("id"), str)}


def check_refs(spec: FormSpec, payload: Mapping[str, Any], allowed: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a file reference that is not one of ``allowed`` (uploaded by this
    request, or already held by the record), or that differs from it.

    Raises:
        ValidationFailed: code ``file`` ("not a valid file reference") per field.
    """
    errors = []
    for path, value in _file_values(spec, payload):
        if not isinstance(value, Mapping):
            continue  # not a reference at all: the form's own validation says so
        known = allowed.get(str(value.get("id")))
        if known is None or any(value.get(k) != known.get(k) for k in ("name", "size", "content_type")):
            errors.append(FieldError(path, "file"))
    if errors:
        raise ValidationFailed(errors)


__all__ = ["Uploads", "check_refs", "stored_refs"]
