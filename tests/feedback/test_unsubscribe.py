"""Unsubscribe links end to end: a signed link from a rule message or from the
SMTP connector's List-Unsubscribe header, through the Flask app, to the
consent rows that rule audiences and the dispatcher read."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from connectors.registry import load_connector
from engine.feedback.unsubscribe_links import sign_unsubscribe, unsubscribe_path
from engine.ports import OutgoingMessage
from engine.publishing import publish_paths
from engine.storage.database import transaction
from engine.storage.models import Consent, Event

from .support import NOW, SECRET_KEY, add_customer

HERE = Path(__file__).resolve().parent
ALL = {"sms": True, "email": True, "wecom": True}


@pytest.fixture
def customers(services) -> None:
    with transaction(services.session_factory) as s:
        for cid in (1, 2):
            add_customer(s, cid, now=NOW, consents=dict(ALL))


def _consents(services, cid: int) -> dict[str, bool]:
    with transaction(services.session_factory) as s:
        return dict(s.execute(select(Consent.channel, Consent.granted).where(Consent.customer_id == cid)).all())


def _link(cid: int | str, channel: str = "*", days: int = 30) -> str:
    return unsubscribe_path(cid, channel, SECRET_KEY, NOW + timedelta(days=days))


def test_get_only_asks_then_post_opts_out_of_every_channel(app, services, customers) -> None:
    client = app.test_client()
    link = _link(1)
    page = client.get(link)
    assert page.status_code == 200 and "确认退订" in page.text and "<form" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert _consents(services, 1) == ALL, "a GET (a mail scanner, a link preview) must not opt anyone out"

    done = client.post(link)  # the button: no session, no CSRF token — the signed link is the authority
    assert done.status_code == 200 and "已退订" in done.text
    assert _consents(services, 1) == {"sms": False, "email": False, "wecom": False}
    assert _consents(services, 2) == ALL
    with transaction(services.session_factory) as s:
        payload = s.execute(select(Event.payload).where(Event.name == "customer.updated")).scalar_one()
    assert payload["reason"] == "opt_out" and payload["customer_id"] == 1 and payload["source"] == "unsubscribe_link"

    again = client.post(link)
    assert again.status_code == 200
    assert _consents(services, 1) == {"sms": False, "email": False, "wecom": False}


def test_channel_link_opts_out_of_that_channel_only(app, services, customers) -> None:
    response = app.test_client().post(_link(2, "sms"), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert _consents(services, 2) == {"sms": False, "email": True, "wecom": True}


def test_bad_links_get_clear_pages_and_change_nothing(app, services, customers, clock) -> None:
    client = app.test_client()
    good = _link(1)
    payload, signature = good.removeprefix("/u/").split(".")
    forged = "/u/" + sign_unsubscribe(2, "*", b"not the instance key", NOW + timedelta(days=1))
    cases = {
        f"/u/{payload}.{signature[:-2]}xx": 403,  # tampered signature
        forged: 403,                               # signed with another key
        "/u/not-a-token": 403,
        "/u/%F0%9F%92%A5.%00": 403,
        _link(1, "fax"): 403,                      # a channel we do not have
        _link("abc"): 403,                         # not a customer id
        _link(999): 404,                           # a customer that does not exist
    }
    for url, status in cases.items():
        assert client.post(url).status_code == status, url
        assert client.get(url).status_code in (status, 200), url
    clock.now = NOW + timedelta(days=31)
    expired = client.post(good)
    assert expired.status_code == 410 and "过期" in expired.text
    assert _consents(services, 1) == ALL and _consents(services, 2) == ALL


def test_pages_speak_english(app, customers) -> None:
    page = app.test_client().get(_link(1, "email") + "?lang=en")
    assert page.status_code == 200 and "Stop receiving marketing messages by e-mail?" in page.text


def test_smtp_list_unsubscribe_one_click(app, services, customers, monkeypatch) -> None:
    monkeypatch.setenv("PF_TEST_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("PF_TEST_UNSUBSCRIBE_KEY", "relay-shared-key")
    publish_paths(services.session_factory, [HERE / "unsubscribe_smtp.yaml"], now=NOW, by="test")
    spec = services.registry.current().connectors["test_smtp"]
    connector = load_connector(spec, env=os.environ, clock=lambda: NOW)
    mail = connector.build(OutgoingMessage(id="7", channel="email", recipient="c1@example.com", subject="春季",
                                           body="hi", options={"customer_id": 1}))
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urlsplit(mail["List-Unsubscribe"].strip("<>"))
    target = f"{url.path}?{url.query}"

    client = app.test_client()
    # RFC 8058: the mail client POSTs this body to the link, with no cookies and no CSRF token.
    response = client.post(target, data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert _consents(services, 1) == {"sms": True, "email": False, "wecom": True}

    # The same token presented to the instance route (another key) is refused, and vice versa.
    token = url.query.removeprefix("token=")
    assert client.post(f"/u/{token}").status_code == 403
    assert client.post(f"/unsubscribe/test_smtp?token={_link(2).removeprefix('/u/')}").status_code == 403
    assert client.post("/unsubscribe/no_such_connector?token=x").status_code == 404
    monkeypatch.delenv("PF_TEST_UNSUBSCRIBE_KEY")
    assert client.post(target).status_code == 503
