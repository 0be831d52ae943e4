"""Customers in (issue 12): one upsert by identity for the REST API, the CSV
import and the WeCom callback, so all three find, create and update customers
the same way and emit the same ``customer.registered`` event.

Identities, in the order they decide who a customer is: ``external_id`` (your
customer id), ``member_no``, ``wecom_userid`` (the WeCom external userid),
``phone`` (normalised: ``+86`` dropped, spaces and dashes ignored), ``email``
(lower-cased). An item is matched to the stored customer of its first
identity that is known; if another of its identities belongs to a *different*
stored customer the item is refused (``identity_conflict``) rather than
silently moving a phone or e-mail from one person to another: merge the two
first (:mod:`engine.customers_merge`).

A customer seen for the first time is inserted with ``registered_at`` (given,
or now) and, unless the write is a history back-fill, a
``customer.registered`` event in the same transaction: rules triggered by it
(the shipped ``welcome_journey``) act when the scheduler next handles events.

Why one batch function: the API's batch of up to 1,000 items and a CSV batch
of thousands of rows both become a handful of set-based statements (one
lookup per identity kind, one executemany per table), not a loop of
round-trips per row.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from engine.conditions.customer_fields import CONSENT_CHANNELS
from engine.definitions.errors import did_you_mean
from engine.storage import accounts_repo, customers_repo, identity_repo
from engine.storage.times import to_db_time
from engine.text_clean import clean_name

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "IDENTITY_KINDS", "PROFILE_FIELDS", "CustomerInput", "FieldProblem", "InvalidCustomer", "Outcome",
    "customer_json", "emit_updated", "normalize_identity", "parse_customer", "resolve_customer", "unstorable_text",
    "upsert_customers",
]

#: Identity kinds, strongest first.
IDENTITY_KINDS = ("external_id", "member_no", "wecom_userid", "phone", "email")
#: Storage kind of each identity in ``customer_identities`` (external id, phone and e-mail are also columns).
_STORE_KIND = {"external_id": "external_id", "member_no": "member_no", "wecom_userid": "wecom",
               "phone": "phone", "email": "email"}
#: Profile fields an item may set.
PROFILE_FIELDS = customers_repo.IMPORT_FIELDS
_TEXT_LIMITS = {"external_id": 128, "member_no": 64, "wecom_userid": 128, "name": 255, "gender": 16,
                "city": 128, "level": 32, "email": 255}
#: Who looks after the customer: ``account_manager`` (a user name; its
#: ``create_task: {to: account_manager}`` tasks reach that user) and ``store``
#: (kept as ``attrs.store``; role tasks go to that store's staff).
ASSIGNMENT_FIELDS = ("account_manager", "store")
_ASSIGNMENT_LIMITS = {"account_manager": 128, "store": 64}
_KEYS = (*IDENTITY_KINDS, *PROFILE_FIELDS, *ASSIGNMENT_FIELDS, "tags", "remove_tags", "consent", "attrs")
_PHONE = re.compile(r"\+?[0-9]{6,20}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# NUL cannot be stored in PostgreSQL text or jsonb; lone surrogates are not UTF-8.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MAX_TAGS = 100
#: The attribute WeCom sends (journeys) and replies (feedback) address a customer by.
WECOM_ATTR = "wecom_external_userid"
EVENT_REGISTERED = "customer.registered"
#: Emitted when a customer is changed through PATCH or a merge (``reason``: ``patch`` or ``merge``).
EVENT_UPDATED = "customer.updated"


@dataclass(frozen=True)
class FieldProblem:
    """One field's problem, as the API's ``{"field", "code", "message"}``."""

    field: str
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class InvalidCustomer(ValueError):
    """A customer payload that cannot be written; ``problems`` says why, per field."""

    def __init__(self, problems: list[FieldProblem]):
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass
class CustomerInput:
    """A clean customer item: identities, profile values to write (a key with
    None clears the field; an absent key keeps it), tags to add and remove,
    consents per channel as (granted, source), custom attributes to merge."""

    identity: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    consents: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    attrs: dict[str, Any] | None = None
    #: The account manager's user name; None with ``account_manager_given`` clears it (PATCH).
    account_manager: str | None = None
    account_manager_given: bool = False


@dataclass
class Outcome:
    """What became of one item: ``created``, ``updated`` or ``error``."""

    status: str
    customer_id: int | None = None
    problems: list[FieldProblem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "id": self.customer_id}
        if self.problems:
            out["errors"] = [p.to_json() for p in self.problems]
        return out


# ------------------------------------------------------------------ parsing

def unstorable_text(value: Any, path: str = "", depth: int = 0) -> list[str]:
    """Paths of strings (values or keys) a database cannot store: NUL or a
    lone surrogate. Checked before anything is written, so hostile text is a
    422 on the field, never a driver error."""
    if depth > 32:
        return [path]
    if isinstance(value, str):
        return [path] if _UNSTORABLE.search(value) else []
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _UNSTORABLE.search(key):
                out.append(path or "")
            else:
                out.extend(unstorable_text(item, where, depth + 1))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(unstorable_text(item, f"{path}[{i}]", depth + 1))
    return out


def normalize_identity(kind: str, value: Any) -> str:
    """One identity value as stored and compared.

    Raises:
        ValueError: with the reason, when ``value`` is not a valid ``kind``.
    """
    from engine.customers_import import normalize_phone

    if kind not in IDENTITY_KINDS:
        raise ValueError(f"unknown identity `{kind}`{did_you_mean(kind, IDENTITY_KINDS)}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("must be a string")
    text = _CONTROL.sub("", str(value)).strip()
    if not text:
        raise ValueError("must not be empty")
    if _UNSTORABLE.search(text):
        raise ValueError("contains an invalid (surrogate) character")
    if kind == "phone":
        try:
            return normalize_phone(text)
        except ValueError:
            raise ValueError(f"`{text[:40]}` is not a phone number") from None
    if kind == "email":
        if not _EMAIL.fullmatch(text) or len(text) > _TEXT_LIMITS["email"]:
            raise ValueError(f"`{text[:60]}` is not an e-mail address")
        return text.lower()
    if len(text) > _TEXT_LIMITS[kind]:
        raise ValueError(f"is longer than {_TEXT_LIMITS[kind]} characters")
    return text


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError("must be a date like 2025-01-31")
    try:
        return date.fromisoformat(value.strip().replace("/", "-"))
    except ValueError:
        raise ValueError(f"`{value[:40]}` is not a date like 2025-01-31") from None


def _moment(value: Any, tz: ZoneInfo) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be a time like 2025-01-31T09:30:00+08:00")
    try:
        moment = datetime.fromisoformat(value.strip().replace("/", "-").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`{value[:40]}` is not a date and time like 2025-01-31T09:30:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment


def _tag_list(value: Any, name: str, problems: list[FieldProblem]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        problems.append(FieldProblem(name, "type", "must be a list of tag names"))
        return ()
    tags = tuple(dict.fromkeys(t.strip() for t in value if t.strip()))
    if len(tags) > MAX_TAGS:
        problems.append(FieldProblem(name, "max_items", f"at most {MAX_TAGS} tags"))
    for i, tag in enumerate(tags):
        if len(tag) > 64 or _CONTROL.search(tag):
            problems.append(FieldProblem(f"{name}[{i}]", "invalid", "a tag has at most 64 printable characters"))
    return tags


def _consents(value: Any, default_source: str, problems: list[FieldProblem]) -> dict[str, tuple[bool, str | None]]:
    out: dict[str, tuple[bool, str | None]] = {}
    if value is None:
        return out
    if not isinstance(value, dict):
        problems.append(FieldProblem("consent", "type", 'must be an object like {"sms": {"granted": true, '
                                                        '"source": "pos"}}'))
        return out
    for channel, given in value.items():
        where = f"consent.{channel}"
        if channel not in CONSENT_CHANNELS:
            problems.append(FieldProblem(where, "unknown_channel", f"unknown channel `{str(channel)[:40]}`"
                                         f"{did_you_mean(str(channel), CONSENT_CHANNELS)}"))
            continue
        source: Any = default_source
        if isinstance(given, dict):
            unknown = sorted(set(given) - {"granted", "source"})
            if unknown:
                problems.append(FieldProblem(f"{where}.{unknown[0][:40]}", "unknown_field",
                                             "a consent has `granted` and `source`"))
                continue
            source = given.get("source", default_source)
            given = given.get("granted")
        if not isinstance(given, bool):
            problems.append(FieldProblem(where, "type", "must be true/false or {\"granted\": true, \"source\": …}"))
            continue
        if not isinstance(source, str) or not source.strip() or len(source) > 64:
            problems.append(FieldProblem(f"{where}.source", "invalid", "a source is a text of 1–64 characters"))
            continue
        out[channel] = (given, source.strip())
    return out


def parse_customer(payload: Any, *, timezone: str, source: str = "api", partial: bool = False) -> CustomerInput:
    """A customer item from JSON, checked field by field.

    ``partial`` (PATCH): no identity is required and ``null`` clears a profile
    field; otherwise ``null`` is the same as leaving the key out.

    Raises:
        InvalidCustomer: every problem of the item.
    """
    problems: list[FieldProblem] = []
    if not isinstance(payload, dict):
        raise InvalidCustomer([FieldProblem("", "type", "a customer is a JSON object")])
    bad = unstorable_text(payload)
    if bad:
        raise InvalidCustomer([FieldProblem(p[:64], "invalid_text", "contains NUL or an invalid (surrogate) character")
                               for p in bad[:20]])
    tz = ZoneInfo(timezone)
    item = CustomerInput()
    for key in payload:
        if key not in _KEYS:
            problems.append(FieldProblem(str(key)[:64], "unknown_field",
                                         f"unknown field `{str(key)[:64]}`{did_you_mean(str(key), _KEYS)}"))
    for kind in IDENTITY_KINDS:
        value = payload.get(kind)
        if value is None:
            continue
        try:
            item.identity[kind] = normalize_identity(kind, value)
        except ValueError as exc:
            problems.append(FieldProblem(kind, "invalid", str(exc)))
    for name in PROFILE_FIELDS:
        if name not in payload:
            continue
        value = payload[name]
        if value is None:
            if partial:
                item.fields[name] = None
            continue
        try:
            if name in ("birthday", "contract_end"):
                item.fields[name] = _date(value)
            elif name == "registered_at":
                item.fields[name] = to_db_time(_moment(value, tz))
            elif name == "timezone":
                if not isinstance(value, str):
                    raise ValueError("must be a time zone like Asia/Shanghai")
                try:
                    ZoneInfo(value)
                except (KeyError, ValueError):
                    raise ValueError(f"`{value[:40]}` is not a time zone like Asia/Shanghai") from None
                item.fields[name] = value
            else:
                if not isinstance(value, str):
                    raise ValueError("must be a string")
                text = clean_name(value)  # controls and bidi overrides out (issue 16)
                if len(text) > _TEXT_LIMITS[name]:
                    raise ValueError(f"is longer than {_TEXT_LIMITS[name]} characters")
                item.fields[name] = text or None
        except ValueError as exc:
            problems.append(FieldProblem(name, "invalid", str(exc)))
    item.tags = _tag_list(payload.get("tags"), "tags", problems)
    item.remove_tags = _tag_list(payload.get("remove_tags"), "remove_tags", problems)
    item.consents = _consents(payload.get("consent"), source, problems)
    attrs = payload.get("attrs")
    if attrs is not None:
        if not isinstance(attrs, dict):
            problems.append(FieldProblem("attrs", "type", "must be an object of custom attributes"))
        else:
            item.attrs = attrs
    for name in ASSIGNMENT_FIELDS:
        if name not in payload or (payload[name] is None and not partial):
            continue
        value = payload[name]
        if value is not None:
            text = clean_name(value) if isinstance(value, str) else ""
            if not text or len(text) > _ASSIGNMENT_LIMITS[name]:
                what = "a user name" if name == "account_manager" else "a store code"
                problems.append(FieldProblem(name, "invalid", f"must be {what} of 1–{_ASSIGNMENT_LIMITS[name]} "
                                                              "characters"))
                continue
            value = text
        if name == "account_manager":
            item.account_manager, item.account_manager_given = value, True
        else:  # where rule tasks look for the customer's store (engine.rule_tasks)
            item.attrs = {**(item.attrs or {}), "store": value}
    if not partial and not item.identity and not any(p.field in IDENTITY_KINDS for p in problems):
        problems.append(FieldProblem("", "required", "give at least one identity: "
                                     + ", ".join(IDENTITY_KINDS)))
    if problems:
        raise InvalidCustomer(problems)
    return item


# ------------------------------------------------------------------ resolving

def resolve_customer(session: Session, identity: Mapping[str, Any]) -> int | None:
    """The stored customer an identity dict names, or None.

    ``identity`` holds any of :data:`IDENTITY_KINDS` (``{"phone": "138…"}``,
    ``{"external_id": "C1", "email": …}``); values are normalised as the
    upsert stores them; the strongest known identity decides. Unknown kinds
    and invalid values raise ``ValueError``.
    """
    clean = {k: normalize_identity(k, v) for k, v in identity.items() if v is not None}
    found = identity_repo.find_identities(session, {_STORE_KIND[k]: {v} for k, v in clean.items()})
    for kind in IDENTITY_KINDS:
        if kind in clean and (_STORE_KIND[kind], clean[kind]) in found:
            return found[(_STORE_KIND[kind], clean[kind])]
    return None


def _conflict(kind: str, other: int, target: int) -> FieldProblem:
    return FieldProblem(kind, "identity_conflict",
                        f"this {kind} belongs to customer {other}, not to customer {target}; "
                        f"merge the two customers first")


# ------------------------------------------------------------------ writing

def upsert_customers(session: Session, items: Sequence[CustomerInput | None], *, now: datetime, source: str,
                     history: bool = False, targets: Sequence[int | None] | None = None,
                     counts: dict[str, int] | None = None) -> list[Outcome]:
    """Create or update one customer per item, in the caller's transaction.

    Items of one batch that share an identity are one customer (the first
    creates it, the next update it). ``None`` items are skipped (their
    outcome is ``error``, for callers that keep positions). ``targets`` (PATCH)
    pins an item to a stored customer: its identities must be free or that
    customer's. ``history``: a back-fill; new customers emit no event.
    ``counts`` (optional) receives ``tags_added``.
    """
    db_now = to_db_time(now)
    targets = list(targets) if targets is not None else [None] * len(items)
    wanted: dict[str, set[str]] = {}
    for item in items:
        for kind, value in (item.identity.items() if item else ()):
            wanted.setdefault(_STORE_KIND[kind], set()).add(value)
    identity_repo.lock_identities(session, ((k, v) for k, vs in wanted.items() for v in vs))
    found = identity_repo.find_identities(session, wanted)
    managers = accounts_repo.user_ids(session, {i.account_manager for i in items if i and i.account_manager})
    stored_ids = set(found.values()) | {t for t in targets if t is not None}
    stored = identity_repo.customer_rows(session, stored_ids)

    outcomes: list[Outcome] = []
    keys: dict[tuple[str, str], int | str] = {}  # identity → stored id or new group "n<k>"
    groups: dict[int | str, dict[str, Any]] = {}
    for item, pinned in zip(items, targets):
        if item is None:
            outcomes.append(Outcome("error"))
            continue
        hits = [(kind, found[(_STORE_KIND[kind], v)]) for kind, v in item.identity.items()
                if (_STORE_KIND[kind], v) in found]
        hits.sort(key=lambda h: IDENTITY_KINDS.index(h[0]))
        target: int | str | None = pinned if pinned is not None else (hits[0][1] if hits else None)
        if pinned is not None and pinned not in stored:
            outcomes.append(Outcome("error", pinned, [FieldProblem("", "not_found", f"no customer {pinned}")]))
            continue
        problems = [_conflict(kind, cid, target) for kind, cid in hits  # type: ignore[arg-type]
                    if target is not None and cid != target]
        if isinstance(target, int):
            ext = stored[target].get("external_id")
            given = item.identity.get("external_id")
            if ext is not None and given is not None and given != ext and not problems:
                problems.append(FieldProblem("external_id", "identity_conflict",
                                             f"customer {target} has external id `{ext}`"))
        if item.account_manager is not None and item.account_manager not in managers:
            problems.append(FieldProblem("account_manager", "unknown_user",
                                         f"no user `{item.account_manager}`"
                                         f"{did_you_mean(item.account_manager, accounts_repo.all_usernames(session))}"))
        if problems:
            outcomes.append(Outcome("error", target if isinstance(target, int) else None, problems))
            continue
        if target is None:
            target = next((keys[(_STORE_KIND[k], v)] for k, v in item.identity.items()
                           if (_STORE_KIND[k], v) in keys), None)
        if target is None:
            target = f"n{len(groups)}"
        for kind, value in item.identity.items():
            keys.setdefault((_STORE_KIND[kind], value), target)
        new = target not in groups and isinstance(target, str)
        group = groups.setdefault(target, {"identity": {}, "fields": {}, "tags": set(), "remove": set(),
                                           "consents": {}, "attrs": {}, "has_attrs": False})
        for kind, value in item.identity.items():
            if kind not in ("external_id",) or "external_id" not in group["identity"]:
                group["identity"][kind] = value
        group["fields"].update(item.fields)
        group["tags"].update(item.tags)
        group["tags"].difference_update(item.remove_tags)
        group["remove"].update(item.remove_tags)
        group["remove"].difference_update(item.tags)
        group["consents"].update(item.consents)
        if item.account_manager_given:
            group["fields"]["account_manager_id"] = (managers[item.account_manager]
                                                     if item.account_manager is not None else None)
        if item.attrs is not None:
            group["attrs"].update(item.attrs)
            group["has_attrs"] = True
        outcomes.append(Outcome("created" if new else "updated", target))  # type: ignore[arg-type]

    new_keys = [k for k in groups if isinstance(k, str)]
    inserts: list[dict[str, Any]] = []
    for new_key in new_keys:
        g = groups[new_key]
        row: dict[str, Any] = {f: g["fields"].get(f) for f in (*PROFILE_FIELDS, "account_manager_id")}
        if row["registered_at"] is None and not history:
            row["registered_at"] = db_now
        attrs = dict(g["attrs"]) if g["has_attrs"] else None
        if "wecom_userid" in g["identity"]:  # where WeCom sends and replies look for it
            attrs = {WECOM_ATTR: g["identity"]["wecom_userid"], **(attrs or {})}
        row.update(external_id=g["identity"].get("external_id"), phone=g["identity"].get("phone"),
                   email=g["identity"].get("email"), attrs=attrs, created_at=db_now, updated_at=db_now)
        inserts.append(row)
    real: dict[int | str, int] = {k: k for k in groups if isinstance(k, int)}  # type: ignore[misc]
    real.update(zip(new_keys, customers_repo.insert_customers(session, inserts)))

    updates: list[dict[str, Any]] = []
    for k, g in groups.items():
        if not isinstance(k, int):
            continue
        row = {"cid": k, **g["fields"]}
        for kind in ("external_id", "phone", "email"):
            if kind in g["identity"] and g["identity"][kind] != stored[k].get(kind):
                row[kind] = g["identity"][kind]
        stored_attrs = stored[k].get("attrs") or {}
        if g["has_attrs"]:
            row["attrs"] = {**stored_attrs, **g["attrs"]}
        if "wecom_userid" in g["identity"] and not stored_attrs.get(WECOM_ATTR):
            row["attrs"] = {**row.get("attrs", stored_attrs), WECOM_ATTR: g["identity"]["wecom_userid"]}
        updates.append(row)
    identity_repo.set_customer_values(session, updates, db_now)
    identity_repo.add_identities(session, [(_STORE_KIND[kind], value, real[k]) for k, g in groups.items()
                                           for kind, value in g["identity"].items()
                                           if kind in ("member_no", "wecom_userid")], db_now)
    added = customers_repo.upsert_tags(session, {(real[k], t) for k, g in groups.items() for t in g["tags"]})
    if counts is not None:
        counts["tags_added"] = counts.get("tags_added", 0) + added
    identity_repo.remove_tags(session, {(real[k], t) for k, g in groups.items() for t in g["remove"]
                                        if isinstance(k, int)})
    customers_repo.upsert_consents(session, [
        {"customer_id": real[k], "channel": ch, "granted": granted, "source": src, "updated_at": db_now}
        for k, g in groups.items() for ch, (granted, src) in sorted(g["consents"].items())])
    if not history:
        identity_repo.append_events(session, [
            {"name": EVENT_REGISTERED, "subject_type": "customer", "subject_id": str(real[k]),
             "payload": {"customer_id": real[k], "source": source}, "created_at": db_now} for k in new_keys])
    for outcome in outcomes:
        if outcome.status != "error":
            outcome.customer_id = real[outcome.customer_id]  # type: ignore[index]
    return outcomes


def emit_updated(session: Session, customer_id: int, payload: Mapping[str, Any], *, now: datetime,
                 source: str) -> None:
    """``customer.updated`` for a PATCH that changed ``customer_id``: the
    fields it gave (rules triggered by the event see what changed)."""
    from engine.storage.events_repo import append_event

    fields = sorted(str(k) for k in payload)
    if fields:
        append_event(session, EVENT_UPDATED, "customer", customer_id,
                     {"customer_id": customer_id, "reason": "patch", "source": source, "fields": fields}, now)


# ------------------------------------------------------------------ reading

def customer_json(session: Session, customer_id: int) -> dict[str, Any] | None:
    """One customer as the API returns it: profile, identities, tags,
    consents (with source), order aggregates and RFM; None if unknown."""
    from engine.storage import customers_view_repo

    found = customers_view_repo.customer_detail(session, customer_id, limit=0)
    if found is None:
        return None
    c = found.customer
    identities: dict[str, list[str]] = {}
    for kind, value in identity_repo.identities_of(session, customer_id):
        identities.setdefault(kind, []).append(value)

    def when(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat() + "Z"
        if isinstance(value, date):
            return value.isoformat()
        return value

    return {
        "id": int(c["id"]),
        "external_id": c["external_id"],
        "member_no": next(iter(identities.get("member_no") or ()), None),
        "wecom_userids": identities.get("wecom", []),
        "phone": c["phone"],
        "email": c["email"],
        **{f: when(c[f]) for f in PROFILE_FIELDS},
        "account_manager": found.account_manager["username"] if found.account_manager else None,
        "store": (c["attrs"] or {}).get("store"),
        "tags": sorted(found.tags),
        "consent": {ch: {"granted": bool(v["granted"]), "source": v["source"], "updated_at": when(v["updated_at"])}
                    for ch, v in sorted(found.consents.items())},
        "attrs": c["attrs"] or {},
        "order_count": int(c["order_count"] or 0),
        "total_spent": str(c["total_spent"] if c["total_spent"] is not None else "0.00"),
        "last_purchase_at": when(c["last_purchase_at"]),
        "rfm_segment": c["rfm_segment"],
        "created_at": when(c["created_at"]),
        "updated_at": when(c["updated_at"]),
    }
