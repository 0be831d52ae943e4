"""The published definitions as one DefinitionSet, rebuilt only when publishing changed them.

Stored bodies are plain dicts, validated at publish time; they are loaded
back through the same loader (``load_texts``) so every caller sees the same
frozen specs as ``promoflow validate``. A cheap fingerprint query (row count
and highest id of ``definitions``) decides whether the cached set is stale;
older form versions, needed to edit records made on them, are built on demand
and cached for good (a stored version never changes).
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING

from engine.definitions.loader import DefinitionSet, load_texts
from engine.definitions.specs import FormSpec, WorkflowSpec
from engine.storage.definitions_repo import (
    StoredDefinition,
    get_definition,
    list_definitions,
)
from engine.storage.records_repo import definitions_fingerprint

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

#: Kinds an old form version may refer to when rebuilt on its own.
_FORM_CONTEXT_KINDS = ("role", "fieldset")
#: Kinds an old workflow version may refer to (its form, roles, templates, connectors).
_WORKFLOW_CONTEXT_KINDS = ("role", "fieldset", "form", "template", "connector", "segment")


class UnknownWorkflow(LookupError):
    """No published workflow has this id (or this version)."""

    def __init__(self, workflow_id: str, version: int | None = None):
        self.workflow_id = workflow_id
        self.version = version
        super().__init__(f"unknown workflow `{workflow_id}`" + (f" version {version}" if version is not None else ""))


class UnknownForm(LookupError):
    """No published form has this id (or this version)."""

    def __init__(self, form_id: str, version: int | None = None):
        self.form_id = form_id
        self.version = version
        super().__init__(f"unknown form `{form_id}`" + (f" version {version}" if version is not None else ""))


def _texts(docs: list[StoredDefinition]) -> list[tuple[str, str]]:
    return [(f"{d.kind}/{d.def_id}.json", json.dumps(d.body, ensure_ascii=False, default=str)) for d in docs]


class DefinitionRegistry:
    """Thread-safe cache of the latest published definitions."""

    def __init__(self, session_factory: sessionmaker[Session], *, max_staleness: float = 1.0):
        """``max_staleness``: seconds a process may serve its cached set before
        asking the database whether anything was published (a publish in this
        process refreshes at once via ``refresh(force=True)``)."""
        self._session_factory = session_factory
        self._max_staleness = max_staleness
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self._fingerprint: tuple[int, int] | None = None
        self._set = DefinitionSet()
        self._versions: dict[tuple[str, str], int] = {}
        self._snapshot: tuple[DefinitionSet, dict[tuple[str, str], int]] = (self._set, self._versions)
        # (the set it was computed on, form id -> its bound workflow id or "")
        self._bound: tuple[DefinitionSet | None, dict[str, str]] = (None, {})
        self._latest_docs: list[StoredDefinition] = []
        self._old_forms: dict[tuple[str, int], FormSpec] = {}
        self._old_workflows: dict[tuple[str, int], WorkflowSpec] = {}

    @property
    def max_staleness(self) -> float:
        """Seconds a cached answer may be served before the database is asked
        again; services caching other slow-changing data use the same bound."""
        return self._max_staleness

    def refresh(self, *, force: bool = False) -> DefinitionSet:
        """Check the fingerprint and rebuild if publishing changed anything; return the set.

        Raises:
            DefinitionsInvalid: the stored set no longer loads (e.g. a code
                change made a published definition invalid).
        """
        return self._refresh(force=force)[0]

    def _refresh(self, *, force: bool = False) -> tuple[DefinitionSet, dict[tuple[str, str], int]]:
        """(set, versions) as one snapshot: a reader never pairs a new set with
        old versions. Until the first load has finished nobody is served the
        empty initial set: concurrent first callers wait for it (before, they
        saw no forms at all and answered 404 while the first request loaded)."""
        snapshot = self._snapshot
        if not force and self._fingerprint is not None and time.monotonic() - self._checked_at < self._max_staleness:
            return snapshot
        with self._session_factory() as session:
            fingerprint = definitions_fingerprint(session)
            if fingerprint == self._fingerprint:
                self._checked_at = time.monotonic()
                return self._snapshot
            with self._lock:
                if fingerprint == self._fingerprint:
                    return self._snapshot
                docs = list_definitions(session)
                definitions = load_texts(_texts(docs)).raise_for_errors()
                self._latest_docs = docs
                versions = {(d.kind, d.def_id): d.version for d in docs}
                self._versions = versions
                self._set = definitions
                self._snapshot = (definitions, versions)
                self._fingerprint = fingerprint
                self._checked_at = time.monotonic()
                return self._snapshot

    def current(self) -> DefinitionSet:
        """The latest published definitions (refreshed if stale)."""
        return self.refresh()

    def version_of(self, kind: str, def_id: str) -> int:
        """The latest published version of a definition.

        Raises:
            KeyError: nothing of that kind and id is published.
        """
        return self._refresh()[1][(kind, def_id)]

    def form(self, form_id: str, version: int | None = None) -> tuple[FormSpec, int]:
        """A form spec and its version: the latest, or the stored ``version``.

        Raises:
            UnknownForm: no such form or version.
        """
        definitions, versions = self._refresh()
        latest = versions.get(("form", form_id))
        if latest is None:
            raise UnknownForm(form_id)
        if version is None or version == latest:
            return definitions.forms[form_id], latest
        cached = self._old_forms.get((form_id, version))
        if cached is not None:
            return cached, version
        spec = self._load_old(form_id, version)
        with self._lock:
            self._old_forms[(form_id, version)] = spec
        return spec, version

    def workflow(self, workflow_id: str, version: int | None = None) -> tuple[WorkflowSpec, int]:
        """A workflow spec and its version: the latest, or the stored ``version``
        (running instances stay on the version they started with).

        An old version is rebuilt from its stored body with the latest forms,
        roles and templates as context, and cached for good.

        Raises:
            UnknownWorkflow: no such workflow or version.
        """
        definitions, versions = self._refresh()
        latest = versions.get(("workflow", workflow_id))
        if latest is None and version is None:
            raise UnknownWorkflow(workflow_id)
        if version is None or version == latest:
            return definitions.workflows[workflow_id], latest  # type: ignore[return-value]
        cached = self._old_workflows.get((workflow_id, version))
        if cached is not None:
            return cached, version
        with self._session_factory() as session:
            stored = get_definition(session, "workflow", workflow_id, version)
        if stored is None:
            raise UnknownWorkflow(workflow_id, version)
        context = [d for d in self._latest_docs if d.kind in _WORKFLOW_CONTEXT_KINDS]
        result = load_texts(_texts(context + [stored]))
        if not result.ok or workflow_id not in result.definitions.workflows:
            raise UnknownWorkflow(workflow_id, version)
        spec = result.definitions.workflows[workflow_id]
        with self._lock:
            self._old_workflows[(workflow_id, version)] = spec
        return spec, version

    def workflow_for_form(self, form_id: str) -> tuple[WorkflowSpec, int] | None:
        """The latest published workflow bound to ``form_id`` (the first by id), or None."""
        definitions, versions = self._refresh()
        cache_for, cache = self._bound
        if cache_for is not definitions:
            cache = {}
            self._bound = (definitions, cache)  # one tuple: never a new set with an old map
        bound = cache.get(form_id)
        if bound is None:
            found = sorted(w.id for w in definitions.workflows.values() if w.form == form_id)
            bound = cache[form_id] = found[0] if found else ""
        if not bound:
            return None
        return definitions.workflows[bound], versions[("workflow", bound)]

    def _load_old(self, form_id: str, version: int) -> FormSpec:
        with self._session_factory() as session:
            stored = get_definition(session, "form", form_id, version)
        if stored is None:
            raise UnknownForm(form_id, version)
        context = [d for d in self._latest_docs if d.kind in _FORM_CONTEXT_KINDS]
        result = load_texts(_texts(context + [stored]))
        if not result.ok or form_id not in result.definitions.forms:
            raise UnknownForm(form_id, version)
        return result.definitions.forms[form_id]


__all__ = ["DefinitionRegistry", "UnknownForm", "UnknownWorkflow"]
