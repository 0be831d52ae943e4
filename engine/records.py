"""Form records: create, read, update, list and export, with audit and events.

Walk 1 of the design: validate with the form runtime, then one transaction
writes the record, its unique-value claims, its audit entry (who, when, diff)
and its ``record.created`` event, or nothing at all. Updates are partial
(PATCH), validated against the form version the record was made on, and
guarded by optimistic locking on ``records.version``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from engine.conditions.ast import Condition
from engine.conditions.check import check_condition
from engine.conditions.kinds import ConditionError
from engine.conditions.parse import parse_condition
from engine.definitions.specs import FieldSpec, FormSpec
from engine.form_actions import bound_customer, run_on_submit
from engine.forms.errors import FieldError, ValidationFailed
from engine.forms.validate import validate_submission
from engine.personal_data import mask
from engine.registry import DefinitionRegistry, UnknownForm
from engine.storage import records_repo as repo
from engine.storage import workflows_repo as wf_repo
from engine.storage.audit import append_audit
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.times import from_db_time, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
#: A hook run in ``RecordService.create``'s transaction: (session, record_row, form_spec, now).
OnCreated = Callable[["Session", repo.RecordRow, FormSpec, datetime], object]
_List = list


class Conflict(Exception):
    """The record changed since the caller read it (stale ``expected_version``)."""

    def __init__(self, record_id: int, expected: int | None, current: int | None):
        self.record_id = record_id
        self.expected = expected
        self.current = current
        super().__init__(f"record {record_id} is at version {current}, not {expected}")


class RecordNotFound(LookupError):
    """No record has this id."""


class RecordLocked(Exception):
    """The form's ``edit.until`` no longer allows changing this record (HTTP 409):
    its approval flow has started (``workflow_started``) or finished
    (``workflow_finished``). ``status`` is the record's status now."""

    def __init__(self, record_id: int, status: str, until: str):
        self.record_id = record_id
        self.status = status
        self.until = until
        when = {"workflow_started": "once its approval flow has started",
                "workflow_finished": "once its approval flow has finished"}.get(until, until)
        super().__init__(f"record {record_id} is {status}: this form's records cannot be changed {when}")


#: Statuses in which a record is with its submitter, not in an approval flow:
#: never sent to one (no workflow bound), sent back (returned) or pulled back
#: (withdrawn), so ``edit.until: workflow_started`` allows changes again.
_NOT_IN_FLOW = frozenset({"submitted", "returned", "withdrawn"})
#: Statuses in which a flow has ended with a decision (``workflow_finished``).
_DECIDED = frozenset({"approved", "rejected"})


def editable(form: FormSpec, status: str) -> bool:
    """Whether the form's ``edit.until`` still allows changing a record in ``status``.

    ``always``: yes. ``workflow_finished``: until the flow approved or rejected
    it. ``workflow_started`` (the default): while no flow is running on it,
    i.e. it was never sent to one, or was returned or withdrawn to its
    submitter (who edits it and sends it again). Who may edit (``edit.by``)
    is a separate question: :func:`engine.accounts.can_edit_record`.
    """
    until = form.edit_until
    if until == "always":
        return True
    if until == "workflow_finished":
        return status not in _DECIDED
    return status in _NOT_IN_FLOW


#: Field types a keyword search (``q``) looks in: free text a person typed.
SEARCH_TYPES = frozenset({"text", "textarea", "phone", "email", "url", "user"})
#: Longest keyword searched for (the rest is ignored).
MAX_SEARCH = 100


class InvalidQuery(ValueError):
    """A list/export filter or sort that does not fit the form; ``message`` says why."""


@dataclass(frozen=True)
class RecordView:
    """A record as callers see it: aware UTC times, JSON-ready data (money as text)."""

    id: int
    form_id: str
    form_version: int
    data: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    status: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "form_id": self.form_id, "form_version": self.form_version, "data": self.data,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), "version": self.version, "status": self.status,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _view(row: repo.RecordRow) -> RecordView:
    return RecordView(row.id, row.form_id, row.form_version, row.data, row.created_by,
                      from_db_time(row.created_at), from_db_time(row.updated_at), row.version, row.status)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: {"old": …, "new": …}}`` for every key whose value changed."""
    return {
        k: {"old": old.get(k), "new": new.get(k)}
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    }


def _unique_fields(form: FormSpec) -> list[FieldSpec]:
    return [f for f in form.fields if f.unique]


class RecordService:
    """Records of published forms. ``now`` is always passed in; nothing reads a clock."""

    def __init__(
        self, session_factory: sessionmaker[Session], registry: DefinitionRegistry, *, tz: str = "Asia/Shanghai",
        on_created: OnCreated | Sequence[OnCreated] = (),
    ):
        """``on_created``: callables ``(session, record_row, form_spec, now)`` run
        inside ``create``'s transaction after the record is written (the
        workflow start): what they write commits with the record, and if one
        raises, nothing of the submission is stored."""
        self._sf = session_factory
        self._registry = registry
        self._tz = tz
        self._on_created: tuple[OnCreated, ...] = (on_created,) if callable(on_created) else tuple(on_created)
        self._unique: dict[int, tuple[FormSpec, bool]] = {}

    # --- validation helpers ------------------------------------------------------

    def _lookups(self, session: Session) -> tuple[Callable[[int], bool], Callable[[str], bool]]:
        return (lambda cid: repo.customer_exists(session, cid)), (lambda name: repo.user_exists(session, name))

    def _validate(
        self, form: FormSpec, payload: Mapping[str, Any], *, now: datetime, tz: str, user: str | None,
        existing: Mapping[str, Any] | None = None, partial: bool = False, record_id: int | None = None,
        allow_readonly: bool = False,
    ) -> dict[str, Any]:
        if not any(f.type in ("customer", "user") or f.unique for f in form.fields):
            # Nothing to look up: no database round trip before the write.
            clean, errors = validate_submission(form, payload, now=now, tz=tz, user=user, existing=existing,
                                                partial=partial, allow_readonly=allow_readonly)
            if errors:
                raise ValidationFailed(errors)
            return clean
        with self._sf() as session:
            customer_exists, user_exists = self._lookups(session)
            needs_users = any(f.type == "user" for f in form.fields)
            clean, errors = validate_submission(
                form, payload, now=now, tz=tz, user=user, existing=existing, partial=partial,
                customer_exists=customer_exists, user_exists=user_exists if needs_users else None,
                allow_readonly=allow_readonly,
            )
            # Friendly pre-check; the claim in the write transaction is what decides.
            errored = {e.field for e in errors}
            for f in _unique_fields(form):
                value = clean.get(f.key)
                fresh = value is not None and f.key not in errored and (existing or {}).get(f.key) != value
                if fresh and repo.unique_taken(session, form.id, f.key, value, except_record=record_id):
                    errors.append(FieldError(f.key, "unique"))
        if errors:
            raise ValidationFailed(errors)
        return clean

    def _claim(self, session: Session, form: FormSpec, record_id: int, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        errors: list[FieldError] = []
        for f in _unique_fields(form):
            before, after = old.get(f.key), new.get(f.key)
            if before == after:
                continue
            if before is not None:
                repo.release_unique(session, form.id, f.key, record_id)
            if after is not None and not repo.claim_unique(session, form.id, f.key, after, record_id):
                errors.append(FieldError(f.key, "unique"))
        if errors:
            raise ValidationFailed(errors)

    # --- commands ------------------------------------------------------------------

    def create(
        self, form_id: str, payload: Mapping[str, Any], *, actor: str | None, now: datetime, tz: str | None = None,
    ) -> RecordView:
        """Validate and store a new record of the latest version of ``form_id``.

        One transaction: record, unique claims, audit entry (action
        ``record.created``, diff of every value), ``record.created`` event
        (with ``customer_id`` when the form binds its records to a customer),
        the form's ``on_submit`` steps (:mod:`engine.form_actions`).

        Raises:
            UnknownForm: no published form ``form_id``.
            ValidationFailed: field errors (including ``unique``); nothing was written.
        """
        form, version = self._registry.form(form_id)
        clean = self._validate(form, payload, now=now, tz=tz or self._tz, user=actor)
        with self._transaction(form) as session:
            row = repo.insert_record(session, form_id=form_id, form_version=version, data=clean, actor=actor, now=now)
            if self._has_unique(form):
                self._claim(session, form, row.id, {}, clean)
            customer_id = bound_customer(session, form, clean) if form.customer_field else None
            event = {"record_id": row.id, "form_id": form_id, "form_version": version, "actor": actor}
            if customer_id is not None:
                event["customer_id"] = customer_id  # rules on record.created act on the customer
            # Queued, not inserted: a hook that accepts pending rows (the
            # workflow start) inserts them with its own, one INSERT per table.
            wf_repo.queue_audit(session, at=now, actor=actor, action="record.created", entity_type="record",
                                entity_id=row.id, diff=_diff({}, clean))
            wf_repo.queue_event(session, "record.created", "record", row.id, event, now)
            run_on_submit(session, form, record_id=row.id, customer_id=customer_id, now=now)
            for hook in self._hooks(form):
                if not getattr(hook, "accepts_pending", False):
                    wf_repo.flush_pending(session)  # other hooks may read what was written
                hook(session, row, form, now)
            wf_repo.flush_pending(session)
            # a hook (the approval flow) may have moved the record on, e.g. to in_review;
            # it says so in the session instead of us reading the row back
            moved = session.info.get("pf.records", {}).get(row.id)
            if moved is not None:
                data, record_version, status = moved
                row = repo.RecordRow(row.id, row.form_id, row.form_version, data, row.created_by, row.created_at,
                                     row.updated_at if record_version == row.version else to_db_time(now),
                                     record_version, status)
        return _view(row)

    def _transaction(self, form: FormSpec) -> Any:
        """``create``'s transaction: without an ORM Session (see
        ``workflows_repo.lean_transaction``) unless something on the way needs
        one: unique-value claims (SAVEPOINTs) or a hook that does not say it
        writes only through ``workflows_repo.Db`` (``accepts_pending``)."""
        engine = self._sf.kw.get("bind")
        if (hasattr(engine, "raw_connection") and hasattr(engine, "dialect") and not self._has_unique(form)
                and form.customer_field is None
                and all(getattr(h, "accepts_pending", False) for h in self._hooks(form))):
            return wf_repo.lean_transaction(engine)
        return transaction(self._sf)

    def _hooks(self, form: FormSpec) -> tuple[OnCreated, ...]:
        """The ``on_created`` hooks for ``form``: a hook with ``applies_to(form)``
        (e.g. redeeming a coupon) runs, and shapes the transaction, only where it applies."""
        def applies(hook: OnCreated) -> bool:
            test = getattr(hook, "applies_to", None)
            return test is None or bool(test(form))

        return tuple(h for h in self._on_created if applies(h))

    def _has_unique(self, form: FormSpec) -> bool:
        key = id(form)
        hit = self._unique.get(key)
        if hit is None or hit[0] is not form:
            hit = self._unique[key] = (form, bool(_unique_fields(form)))
        return hit[1]

    def update(
        self, record_id: int, payload: Mapping[str, Any], *, actor: str | None, now: datetime,
        expected_version: int | None = None, tz: str | None = None, allow_readonly: bool = False,
    ) -> RecordView:
        """Apply a partial change to a record, validated against the record's form version.

        Without ``expected_version`` a concurrent change is retried on the new
        state (last writer wins per field); with it, any change since that
        version raises Conflict. An update that changes nothing writes nothing.
        Who may edit (``edit.by``) is the caller's decision; whether the record
        may still change (``edit.until``, see :func:`editable`) is decided
        here, and the write is a compare-and-set on both the version and the
        status read, so a flow that starts concurrently wins cleanly.

        Raises:
            RecordNotFound, UnknownForm, ValidationFailed, Conflict,
            RecordLocked (``edit.until`` forbids changes in the record's status).
        """
        for _attempt in range(5):
            with self._sf() as session:
                current = repo.get_record(session, record_id)
            if current is None:
                raise RecordNotFound(record_id)
            if expected_version is not None and expected_version != current.version:
                raise Conflict(record_id, expected_version, current.version)
            form, _ = self._registry.form(current.form_id, current.form_version)
            if not editable(form, current.status):
                raise RecordLocked(record_id, current.status, form.edit_until)
            clean = self._validate(form, payload, now=now, tz=tz or self._tz, user=actor, existing=current.data,
                                   partial=True, record_id=record_id, allow_readonly=allow_readonly)
            diff = _diff(current.data, clean)
            if not diff:
                return _view(current)
            with transaction(self._sf) as session:
                if not repo.update_record_data(session, record_id, expected_version=current.version, data=clean, now=now,
                                               expected_status=current.status):
                    latest = repo.get_record(session, record_id)
                    if expected_version is not None and (latest is None or latest.version != expected_version):
                        raise Conflict(record_id, expected_version, None if latest is None else latest.version)
                    continue  # changed (or its status moved on): check again on the new state
                self._claim(session, form, record_id, current.data, clean)
                append_audit(session, at=now, actor=actor, action="record.updated", entity_type="record",
                             entity_id=record_id, diff=diff)
                append_event(session, "record.updated", "record", record_id,
                             {"record_id": record_id, "form_id": current.form_id, "actor": actor,
                              "version": current.version + 1, "changed": sorted(diff)}, now)
            with self._sf() as session:
                updated = repo.get_record(session, record_id)
            assert updated is not None
            return _view(updated)
        raise Conflict(record_id, expected_version, None)

    # --- queries ---------------------------------------------------------------------

    def get(self, record_id: int) -> RecordView | None:
        """The record, or None."""
        with self._sf() as session:
            row = repo.get_record(session, record_id)
        return None if row is None else _view(row)

    def _query(
        self, form_id: str, where: Mapping[str, Any] | Condition | None, created_by: str | None, sort: str,
        now: datetime | None, search: str | None = None,
    ) -> repo.RecordQuery:
        form, _ = self._registry.form(form_id)
        kinds = dict(form.field_kinds())
        cond: Condition | None
        if where is None or (isinstance(where, Mapping) and not where):
            cond = None
        elif isinstance(where, Mapping):
            cond, problems = parse_condition(dict(where))
            if problems or cond is None:
                raise InvalidQuery("; ".join(p.message for p in problems) or "bad filter")
        else:
            cond = where
        if cond is not None:
            problems = check_condition(cond, kinds, what="field")
            if problems:
                raise InvalidQuery("; ".join(p.message for p in problems))
        descending = sort.startswith("-")
        sort_key = sort.lstrip("-+") or "created_at"
        if sort_key not in repo.SORT_COLUMNS and (sort_key not in kinds or kinds[sort_key].value == "list"):
            raise InvalidQuery(f"cannot sort by `{sort_key}`")
        money = [f.key for f in form.fields if f.type == "money"]
        keyword = (search or "").strip()[:MAX_SEARCH] or None
        return repo.RecordQuery(form_id, kinds, money, cond, created_by, sort_key, descending, now, keyword,
                                tuple(f.key for f in form.fields if f.type in SEARCH_TYPES))

    def list(
        self, form_id: str, *, where: Mapping[str, Any] | Condition | None = None, created_by: str | None = None,
        sort: str = "-created_at", page: int = 1, per_page: int = 20, now: datetime | None = None,
        search: str | None = None,
    ) -> Page[RecordView]:
        """One page of a form's records, filtered by a condition (the language of
        ``visible_if``) and/or submitter, sorted by ``sort`` (a form field or
        created_at/updated_at/id; ``-`` for descending). ``now`` anchors relative
        filters (``within: 7d``). ``per_page`` is capped at 500. ``search``: a
        keyword that one of the form's text fields must contain (:data:`SEARCH_TYPES`).

        Raises:
            UnknownForm, InvalidQuery.
        """
        query = self._query(form_id, where, created_by, sort, now, search)
        page = max(1, int(page))
        per_page = max(1, min(500, int(per_page)))
        try:
            with self._sf() as session:
                rows, total = repo.list_records(session, query, offset=(page - 1) * per_page, limit=per_page)
        except ConditionError as exc:
            raise InvalidQuery(str(exc)) from exc
        return Page(tuple(_view(r) for r in rows), total, page, per_page)

    def export_csv(
        self, form_id: str, where: Mapping[str, Any] | Condition | None = None, *, locale: str = "zh",
        created_by: str | None = None, sort: str = "-created_at", now: datetime | None = None,
        search: str | None = None, tz: str = "UTC", unmasked: bool = False,
    ) -> Iterator[str]:
        """CSV text in chunks (one line each), header first: record id, the form's
        field labels in ``locale``, submitter, submitted at. Times (the
        submission, datetime fields) are ISO 8601 in ``tz`` (the business time
        zone) with their offset, e.g. ``2025-03-01T10:00:00+08:00``. Choice
        values show their labels. A sub-table is flattened into one column per
        sub-field ("物料清单 · 物品") and one line per line item: a record with
        three items gives three lines that repeat the record's own cells (so a
        spreadsheet can filter and sum them), with several tables their rows
        side by side; a record without items gives one line. Cells that a
        spreadsheet would run as a formula are prefixed with ``'``. The first
        chunk starts with a UTF-8 BOM so spreadsheet programs read Chinese
        correctly. The filter is checked before the first chunk is produced.
        Phone and e-mail fields are masked (``138****1234``) unless
        ``unmasked`` (the caller checked the permission and audited it).

        Raises:
            UnknownForm, InvalidQuery.
        """
        query = self._query(form_id, where, created_by, sort, now, search)
        form, _ = self._registry.form(form_id)
        return self._csv_lines(form, query, locale, ZoneInfo(tz), unmasked)

    def _csv_lines(self, form: FormSpec, query: repo.RecordQuery, locale: str, zone: ZoneInfo,
                   unmasked: bool = False) -> Iterator[str]:
        en = not locale.lower().startswith("zh")
        header = ["ID" if en else "编号"]
        for f in form.fields:
            title = (f.label_en or f.label) if en else f.label
            if f.type == "table" and f.fields:
                header += [f"{title} · {(c.label_en or c.label) if en else c.label}" for c in f.fields]
            else:
                header.append(title)
        header += ["Submitted by" if en else "提交人", "Submitted at" if en else "提交时间"]
        yield "\ufeff" + _csv_line(header)
        tables = [f for f in form.fields if f.type == "table" and f.fields]
        with self._sf() as session:
            try:
                for row in repo.iter_records(session, query):
                    items = {f.key: [r for r in row.data.get(f.key) or () if isinstance(r, Mapping)]
                             if isinstance(row.data.get(f.key), list) else [] for f in tables}
                    for line in range(max([1, *(len(v) for v in items.values())])):
                        cells = [str(row.id)]
                        for f in form.fields:
                            if f.type == "table" and f.fields:
                                item = items[f.key][line] if line < len(items[f.key]) else {}
                                cells += [_cell(c, item.get(c.key), en, zone, unmasked) for c in f.fields]
                            else:
                                cells.append(_cell(f, row.data.get(f.key), en, zone, unmasked))
                        cells += [_safe(row.created_by or ""),
                                  from_db_time(row.created_at).astimezone(zone).isoformat(timespec="seconds")]
                        yield _csv_line(cells)
            except ConditionError as exc:
                raise InvalidQuery(str(exc)) from exc


#: Field types holding a person's contact data, masked in exports (issue 16).
_CONTACT_TYPES = frozenset({"phone", "email"})


def _csv_line(cells: _List[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def _safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _label(f: FieldSpec, value: Any, en: bool) -> str:
    for o in f.options:
        if o.value == value:
            return (o.label_en or o.label) if en else o.label
    return str(value)


def _cell(f: FieldSpec, value: Any, en: bool, zone: ZoneInfo | None = None, unmasked: bool = True) -> str:
    if value is None:
        return ""
    if f.type in _CONTACT_TYPES and not unmasked and isinstance(value, str):
        return _safe(mask(value))
    if f.type == "datetime" and zone is not None and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return _safe(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo("UTC"))
        return moment.astimezone(zone).isoformat(timespec="seconds")
    if f.type == "checkbox":
        return ("yes" if en else "是") if value else ("no" if en else "否")
    if f.type == "select":
        return _safe(_label(f, value, en))
    if f.type == "multiselect" and isinstance(value, list):
        return _safe("; ".join(_label(f, v, en) for v in value))
    if f.type == "file":
        files = value if isinstance(value, list) else [value]
        return _safe("; ".join(str(x.get("name", "")) for x in files if isinstance(x, Mapping)))
    if f.type == "table":
        return _safe(json.dumps(value, ensure_ascii=False))
    if f.type in ("money", "integer", "number", "customer"):
        return str(value)
    return _safe(str(value))


__all__ = [
    "Conflict",
    "InvalidQuery",
    "Page",
    "RecordLocked",
    "RecordNotFound",
    "RecordService",
    "RecordView",
    "UnknownForm",
    "ValidationFailed",
]
