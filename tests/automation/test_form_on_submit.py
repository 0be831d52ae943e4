"""A form bound to a customer by a phone field, with ``on_submit`` steps,
submitted through the HTTP API (both databases): the customer with that phone
(written any way: +86, spaces) is tagged and the custom event is appended in
the submission's transaction; an unknown phone is a 422 on that field and
nothing at all is stored; a rule on the emitted event acts on the customer."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

from sqlalchemy import func, select

from engine.customers_import import import_customers
from engine.definitions.loader import load_texts
from engine.storage.models import Customer, Event, Record

from .scenario_api import Api
from .scenario_support import Sim, local

FORM = """\
kind: form
id: booth_signup
title: 展台登记
title_en: Booth sign-up
submit_roles: [staff]
customer: {field: mobile}
fields:
  - {key: mobile, label: 手机, label_en: Mobile, type: phone, required: true}
  - {key: interest, label: 兴趣, type: text}
on_submit:
  - add_tag: booth_2026
  - emit: custom.booth.signed_up
"""
RULE = """\
kind: rule
id: booth_followup
title: 展台跟进
trigger: {event: custom.booth.signed_up}
steps:
  - add_tag: booth_followed_up
"""
URL = "/api/v1/forms/booth_signup/records"


def test_phone_bound_form_tags_emits_and_refuses_unknown_phones(session_factory, db_url: str,
                                                                tmp_path: Path) -> None:
    t0 = local(date(2026, 5, 6), time(10))
    (tmp_path / "c.csv").write_text("external_id,name,phone\nP1,甲,13900000001\nP2,乙,13900000002\n",
                                    encoding="utf-8")
    assert import_customers(session_factory, tmp_path / "c.csv", now=t0).errors == []
    (tmp_path / "booth.yaml").write_text(FORM, encoding="utf-8")
    api = Api(db_url, tmp_path / "instance", t0, {"desk": ["staff"]}, extra=(tmp_path / "booth.yaml",))
    with session_factory() as s:
        ids = {c.external_id: c.id for c in s.scalars(select(Customer))}

    created = api.post(URL, {"mobile": "+86 139 0000 0001", "interest": "茶"}, as_="desk", at=t0)
    assert created.status_code == 201, created.json
    refused = api.post(URL, {"mobile": "13900000009"}, as_="desk", at=t0)
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.json["errors"]] == [("mobile", "no_customer_with_phone")]

    sim = Sim(session_factory, load_texts([("rule.yaml", RULE)]).definitions)
    assert sim.tags(ids["P1"]) == {"booth_2026"} and sim.tags(ids["P2"]) == set()
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Record).where(Record.form_id == "booth_signup")) == 1
        events = {(e.name, e.subject_id, (e.payload or {}).get("customer_id"))
                  for e in s.scalars(select(Event).where(Event.name.in_(
                      ["custom.booth.signed_up", "customer.tagged", "record.created"])))}
    record_id = created.json["id"]
    p1 = ids["P1"]
    assert events == {("custom.booth.signed_up", str(p1), p1), ("customer.tagged", str(p1), p1),
                      ("record.created", str(record_id), p1)}
    sim.tick(local(date(2026, 5, 6), time(10, 5)))
    assert sim.tags(p1) == {"booth_2026", "booth_followed_up"}
