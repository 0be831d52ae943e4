"""The records CSV export masks phone and e-mail fields; ``?unmask=1`` is the
``unmask_personal_data`` permission and is audited (issue 16, item 3)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from flask import Flask
from web_support import NOW, bearer

from engine.library import library_paths
from engine.publishing import publish_paths

CALLBACK = """\
kind: form
id: callback_request
title: 回访登记
title_en: Call-back request
submit_roles: [staff]
view_roles: [marketing_manager]
fields:
  - {key: contact, label: 联系人, label_en: Contact, type: text, required: true}
  - {key: mobile, label: 手机, label_en: Mobile, type: phone, required: true}
  - {key: mail, label: 邮箱, label_en: E-mail, type: email}
"""


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_export_masks_contact_fields_unless_unmasked_with_the_permission(app: Flask, tokens, login,
                                                                          tmp_path: Path) -> None:
    form = tmp_path / "callback.yaml"
    form.write_text(CALLBACK, encoding="utf-8")
    publish_paths(app.extensions["promoflow"].session_factory, [*library_paths(), form], now=NOW, by="test")
    created = app.test_client().post("/api/v1/forms/callback_request/records", headers=bearer(tokens["staff"]),
                                     json={"contact": "王五", "mobile": "13877776666", "mail": "wang.wu@example.com"})
    assert created.status_code == 201, created.text

    masked = login("manager").get("/forms/callback_request/records.csv?lang=en")
    assert masked.status_code == 200
    rows = _rows(masked)
    assert rows[0][1:4] == ["Contact", "Mobile", "E-mail"]
    assert rows[1][1:4] == ["王五", "138****6666", "w***@example.com"]
    assert login("manager").get("/forms/callback_request/records.csv?unmask=1").status_code == 403

    full = login("admin").get("/forms/callback_request/records.csv?unmask=1")
    assert full.status_code == 200
    assert _rows(full)[1][1:4] == ["王五", "13877776666", "wang.wu@example.com"]
    audit = app.test_client().get("/api/v1/audit?action=personal_data.unmasked", headers=bearer(tokens["admin"]))
    items = audit.get_json()["items"]
    assert [(i["actor"], i["entity_type"], i["entity_id"]) for i in items] == [("admin", "form", "callback_request")]
    assert items[0]["diff"]["fields"] == ["mail", "mobile"]
