"""RecordService on SQLite and PostgreSQL: one transaction per change, audit, events, locking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.forms.errors import ValidationFailed
from engine.records import (
    Conflict,
    InvalidQuery,
    RecordNotFound,
    RecordService,
    UnknownForm,
)
from engine.storage.models import AuditEntry, Event, Record, RecordUniqueValue

from .conftest import NOW, activity, redemption


def counts(sf: sessionmaker[Session]) -> tuple[int, int, int]:
    with sf() as s:
        records, events = (s.scalar(select(func.count()).select_from(m)) for m in (Record, Event))
        # Record audit entries only: publishing the fixture's definitions is audited too (issue 16).
        audits = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "record"))
        return records, audits, events  # type: ignore[return-value]


def test_create_writes_record_audit_and_event(service: RecordService, published: sessionmaker[Session]) -> None:
    view = service.create("activity_request", activity(), actor="alice", now=NOW)
    assert view.version == 1 and view.form_version == 1 and view.created_by == "alice"
    assert view.created_at == NOW and view.created_at.tzinfo is not None
    assert view.data["budget"] == "60000.00"
    assert view.data["materials"] == [{"item": "海报", "qty": 10, "unit_cost": "5.50"}]
    assert view.data["status"] == "draft"  # read-only default
    assert counts(published) == (1, 1, 1)
    with published() as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "record")).one()
        event = s.scalars(select(Event)).one()
        record = s.get(Record, view.id)
    assert (audit.actor, audit.action, audit.entity_type, audit.entity_id) == ("alice", "record.created", "record", str(view.id))
    assert audit.diff["budget"] == {"old": None, "new": "60000.00"}
    assert (event.name, event.subject_type, event.subject_id) == ("record.created", "record", str(view.id))
    assert event.payload["form_id"] == "activity_request"
    assert record is not None and record.created_by is not None  # alice's users.id
    assert service.get(view.id) == view


def test_invalid_submission_writes_nothing(service: RecordService, published: sessionmaker[Session]) -> None:
    with pytest.raises(ValidationFailed) as info:
        service.create("activity_request", activity(budget="abc", end_date="2026-03-01"), actor="alice", now=NOW)
    assert {(e.field, e.code) for e in info.value.errors} == {("budget", "money_type"), ("end_date", "after")}
    assert counts(published) == (0, 0, 0)


def test_unknown_form(service: RecordService) -> None:
    with pytest.raises(UnknownForm):
        service.create("nope", {}, actor="alice", now=NOW)
    with pytest.raises(UnknownForm):
        service.list("nope")


def test_unknown_customer_is_a_field_error(service: RecordService) -> None:
    with pytest.raises(ValidationFailed) as info:
        service.create("store_redemption", redemption(customer=999), actor="alice", now=NOW)
    assert [(e.field, e.code) for e in info.value.errors] == [("customer", "customer_not_found")]


def test_current_user_and_now_defaults(service: RecordService) -> None:
    view = service.create("store_redemption", redemption(), actor="alice", now=NOW)
    assert view.data["staff"] == "alice"
    assert view.data["redeemed_at"] == "2026-03-01T02:00:00"
    assert view.data["order_amount"] == "199.00"


def test_update_diff_and_optimistic_locking(service: RecordService, published: sessionmaker[Session]) -> None:
    view = service.create("activity_request", activity(), actor="alice", now=NOW)
    later = NOW + timedelta(hours=1)
    updated = service.update(view.id, {"budget": 70000, "name": "春季大促"}, actor="bob", now=later, expected_version=1)
    assert updated.version == 2 and updated.updated_at == later and updated.created_at == NOW
    assert updated.data["budget"] == "70000.00" and updated.data["materials"] == view.data["materials"]
    with published() as s:
        audits = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        events = s.scalars(select(Event).order_by(Event.id)).all()
    assert audits[-1].action == "record.updated" and audits[-1].actor == "bob"
    assert audits[-1].diff == {"budget": {"old": "60000.00", "new": "70000.00"}, "name": {"old": "春季促销", "new": "春季大促"}}
    assert [e.name for e in events] == ["record.created", "record.updated"]
    with pytest.raises(Conflict):
        service.update(view.id, {"budget": 1}, actor="bob", now=later, expected_version=1)
    assert counts(published) == (1, 2, 2)
    # Nothing changed → nothing written.
    same = service.update(view.id, {"budget": "70000"}, actor="bob", now=later)
    assert same.version == 2 and counts(published) == (1, 2, 2)


def test_update_validates_merged_data(service: RecordService) -> None:
    view = service.create("activity_request", activity(), actor="alice", now=NOW)
    with pytest.raises(ValidationFailed) as info:
        service.update(view.id, {"discount_type": "percent"}, actor="alice", now=NOW)
    assert [(e.field, e.code) for e in info.value.errors] == [("discount_percent", "required")]
    changed = service.update(view.id, {"discount_type": "percent", "discount_percent": 20}, actor="alice", now=NOW)
    assert "coupon_value" not in changed.data  # hidden now: dropped
    with pytest.raises(ValidationFailed) as info:
        service.update(view.id, {"status": "approved"}, actor="alice", now=NOW)
    assert info.value.errors[0].code == "readonly"
    assert service.update(view.id, {"status": "approved"}, actor="wf", now=NOW, allow_readonly=True).data["status"] == "approved"
    with pytest.raises(RecordNotFound):
        service.update(10**6, {}, actor="alice", now=NOW)


def test_list_filters_sort_pagination(service: RecordService) -> None:
    budgets = [1000, 60000, 25000, 80000, 500]
    ids = []
    for i, budget in enumerate(budgets):
        actor = "alice" if i % 2 == 0 else "bob"
        ids.append(service.create("activity_request", activity(budget=budget, name=f"a{i}"), actor=actor,
                                  now=NOW + timedelta(minutes=i)).id)
    page = service.list("activity_request", now=NOW)
    assert page.total == 5 and [r.id for r in page.items] == ids[::-1]
    big = service.list("activity_request", where={"budget": {"gt": 20000}}, sort="budget", now=NOW)
    assert [r.data["budget"] for r in big.items] == ["25000.00", "60000.00", "80000.00"]
    desc = service.list("activity_request", sort="-budget", per_page=2, page=2, now=NOW)
    assert desc.total == 5 and desc.pages == 3 and [r.data["budget"] for r in desc.items] == ["25000.00", "1000.00"]
    mine = service.list("activity_request", created_by="bob", sort="id")
    assert [r.id for r in mine.items] == [ids[1], ids[3]]
    both = service.list("activity_request", where={"all": [{"channel": "wecom"}, {"budget": {"between": [900, 30000]}}]},
                        sort="name")
    assert [r.data["name"] for r in both.items] == ["a0", "a2"]
    recent = service.list("activity_request", where={"start_date": {"within_next": "7d"}}, now=NOW)
    assert recent.total == 5
    with pytest.raises(InvalidQuery):
        service.list("activity_request", where={"nope": 1})
    with pytest.raises(InvalidQuery):
        service.list("activity_request", sort="materials")


def test_csv_export(service: RecordService) -> None:
    service.create("activity_request", activity(name="=HYPERLINK(1)"), actor="alice", now=NOW)
    service.create("activity_request", activity(budget=10, name="小"), actor="bob", now=NOW + timedelta(minutes=1))
    chunks = service.export_csv("activity_request", where={"budget": {"gt": 100}})
    lines = "".join(chunks).lstrip("\ufeff").splitlines()
    assert lines[0].startswith("编号,活动名称,渠道,预算(元),开始日期")
    assert len(lines) == 2 and "'=HYPERLINK(1)" in lines[1] and "企业微信" in lines[1] and "60000.00" in lines[1]
    en = list(service.export_csv("activity_request", locale="en"))
    assert en[0].lstrip("\ufeff").startswith("ID,Activity name,Channel,Budget (CNY)") and len(en) == 3


def test_unique_field(service: RecordService, published: sessionmaker[Session]) -> None:
    first = service.create("store_redemption", redemption(), actor="alice", now=NOW)
    with pytest.raises(ValidationFailed) as info:
        service.create("store_redemption", redemption(), actor="bob", now=NOW)
    assert [(e.field, e.code) for e in info.value.errors] == [("coupon_code", "unique")]
    assert info.value.errors[0].message("en") == "This value is already used by another record"
    other = service.create("store_redemption", redemption("WB20-AAAAAAAA"), actor="bob", now=NOW)
    with pytest.raises(ValidationFailed):
        service.update(other.id, {"coupon_code": "WB20-8F3K2Q9A"}, actor="bob", now=NOW)
    service.update(first.id, {"coupon_code": "WB20-BBBBBBBB"}, actor="alice", now=NOW)
    service.update(other.id, {"coupon_code": "WB20-8F3K2Q9A"}, actor="bob", now=NOW)  # freed by the update
    with published() as s:
        assert s.scalar(select(func.count()).select_from(RecordUniqueValue)) == 2
