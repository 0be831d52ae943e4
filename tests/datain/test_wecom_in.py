"""WeCom customer-contact callbacks through the real hook and crypto: a new
external contact becomes a customer with a WeCom identity (and is welcomed),
joining a customer group emits custom.community.joined and the shipped
community rule acts; WeCom's retries change nothing; both databases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.library import library_paths
from engine.publishing import publish_paths
from engine.storage.models import CustomerTag, Event, OutboxMessage

from feedback.support import WECOM_AES_KEY, WECOM_TOKEN, wecom_post  # the feedback tests' WeCom crypto helpers

from .conftest import NOW

FEEDBACK = Path(__file__).resolve().parents[1] / "feedback"
URL = "/hooks/wecom/test_wecom"


@pytest.fixture
def hook(app, monkeypatch):
    monkeypatch.setenv("PF_TEST_WECOM_TOKEN", WECOM_TOKEN)
    monkeypatch.setenv("PF_TEST_WECOM_AES_KEY", WECOM_AES_KEY)
    sf = app.extensions["promoflow"].session_factory
    publish_paths(sf, [*library_paths(), FEEDBACK / "sources.yaml"], now=NOW, by="test")
    client = app.test_client()

    def post(inner: str) -> int:
        ts = int(app.extensions["promoflow"].clock().timestamp())
        query, body = wecom_post(inner, ts)
        return client.post(f"{URL}?{query}", data=body, content_type="text/xml").status_code

    return post


def _contact_added(external: str, ts: int) -> str:
    return ("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[add_external_contact]]></ChangeType>"
            f"<UserID><![CDATA[store_li]]></UserID><ExternalUserID><![CDATA[{external}]]></ExternalUserID>"
            "<State><![CDATA[poster_spring]]></State><WelcomeCode><![CDATA[WC]]></WelcomeCode></xml>")


def _joined_group(members: list[str], ts: int) -> str:
    items = "".join(f"<Item><![CDATA[{m}]]></Item>" for m in members)
    return ("<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
            f"<CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_chat]]></Event><ChatId><![CDATA[wrCHAT1]]></ChatId>"
            "<ChangeType><![CDATA[update]]></ChangeType><UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
            f"<JoinScene>1</JoinScene><QuitScene>0</QuitScene><MemChangeCnt>{len(members)}</MemChangeCnt>"
            f"<MemChangeList>{items}</MemChangeList><LastMemVer>a</LastMemVer><CurMemVer>b</CurMemVer></xml>")


def test_contact_added_and_group_joined_become_customers_and_events(app, api, hook, worker_tick) -> None:
    ts = int(NOW.timestamp())
    known = api("POST", "/customers", json={"phone": "13800000001", "wecom_userid": "wmKNOWN",
                                            "consent": {"wecom": True}}).get_json()["id"]
    assert hook(_contact_added("wmNEW", ts)) == 200
    assert hook(_contact_added("wmNEW", ts)) == 200  # WeCom's retry
    assert hook(_joined_group(["wmKNOWN", "store_li", "wmNEW"], ts + 1)) == 200
    sf = app.extensions["promoflow"].session_factory
    with sf() as s:
        events = s.execute(select(Event.name, Event.subject_id).where(Event.name.like("custom.%"))
                           .order_by(Event.id)).all()
        registered = s.scalars(select(Event.subject_id).where(Event.name == "customer.registered")).all()
    new = api("POST", "/customers", json={"wecom_userid": "wmNEW"}).get_json()
    assert new["status"] == "updated" and new["wecom_userids"] == ["wmNEW"]
    assert events == [("custom.wecom.contact_added", str(new["id"])),
                      ("custom.community.joined", str(known)), ("custom.community.joined", str(new["id"]))]
    assert sorted(registered) == sorted([str(known), str(new["id"])])  # the staff member is no customer

    worker_tick(NOW + timedelta(minutes=1))
    with sf() as s:
        tagged = set(s.scalars(select(CustomerTag.customer_id).where(CustomerTag.tag == "community_member")))
        welcomed = s.execute(select(OutboxMessage.customer_id, OutboxMessage.recipient)
                             .where(OutboxMessage.template_id == "community_welcome")).all()
    assert tagged == {known, new["id"]}
    assert welcomed == [(known, "wmKNOWN")]  # only the customer who consented to WeCom messages


def test_feedback_moves_with_a_merge(app, api, hook) -> None:
    """A reply stored as feedback of the WeCom customer belongs to the survivor after a merge."""
    from feedback.support import wecom_text_xml

    from engine.storage.models import Feedback

    a = api("POST", "/customers", json={"phone": "13800000007", "name": "甲"}).get_json()["id"]
    b = api("POST", "/customers", json={"wecom_userid": "wmREPLY"}).get_json()["id"]
    assert hook(wecom_text_xml("wmREPLY", "券什么时候到期？", "20001", int(NOW.timestamp()))) == 200
    sf = app.extensions["promoflow"].session_factory
    with sf() as s:
        assert s.scalars(select(Feedback.customer_id)).all() == [b]
    assert api("POST", f"/customers/{a}/merge", json={"from": b}).get_json()["moved"]["feedback"] == 1
    with sf() as s:
        assert s.scalars(select(Feedback.customer_id)).all() == [a]
    # The WeCom id now names the survivor, for the next reply or contact event.
    assert api("POST", "/customers", json={"wecom_userid": "wmREPLY"}).get_json()["id"] == a
