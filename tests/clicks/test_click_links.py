"""Short click links (issue 12, part 4), end to end through the product's doors.

A rule message with a URL is queued by the worker's automation tick, delivered
by its dispatch tick (the memory connector records what it got): the URL is a
``/c/<token>`` link; ``GET /c/<token>`` redirects 302 to the template's URL and
records ``message.clicked``; two days later the journey's ``if:
{message_clicked: true}`` takes the clicked branch for the customer who
clicked and the other branch for the one who did not. Customers come in
through the CSV import (``promoflow customers import``); definitions through
publishing; nothing is written into product tables by the test.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

import pytest
from sqlalchemy import func, select, text

from connectors.memory import MemoryConnector
from engine.clicks import TOKEN_LENGTH, short_tokens, template_urls
from engine.customers_import import import_customers
from engine.library import library_paths
from engine.publishing import publish_paths
from engine.settings import Settings
from engine.storage.models import ClickLink, Event, LinkClick, OutboxMessage
from web import create_app
from web.worker import tick_functions

NOW = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)  # Monday 09:00 in Shanghai
URL = "https://shop.example.cn/spring?from=sms&x=1"
BASE = "https://p.example.cn"

DEFINITIONS = f"""
- kind: connector
  id: sms_mem
  type: memory
  channel: sms
- kind: template
  id: spring_link
  channels: [sms]
  sms: {{aliyun_template_code: SMS_100001, sign_name: 促销通}}
  body: "{{{{ customer.name }}}}您好，春季新品 {URL} 立即查看。退订回T"
- kind: template
  id: spring_app
  channels: [sms]
  sms: {{aliyun_template_code: SMS_100001, sign_name: 促销通}}
  body: "{{{{ customer.name }}}}您好，会员中心 {{{{ base_url }}}}/app?from=sms 查看积分。退订回T"
- kind: template
  id: spring_clicked
  channels: [sms]
  sms: {{aliyun_template_code: SMS_100001, sign_name: 促销通}}
  body: "感谢关注春季新品！退订回T"
- kind: template
  id: spring_not_clicked
  channels: [sms]
  sms: {{aliyun_template_code: SMS_100001, sign_name: 促销通}}
  body: "春季新品还在等您，退订回T"
- kind: rule
  id: spring_click
  title: 春季新品点击
  trigger: {{schedule: "0 10 * * *", timezone: Asia/Shanghai}}
  audience:
    customer:
      all:
        - {{consent.sms: true}}
        - {{city: 杭州}}
  once_per: ever
  steps:
    - send: {{channel: sms, template: spring_link, connector: sms_mem}}
    - wait: 2d
    - if: {{message_clicked: true}}
      then:
        - send: {{channel: sms, template: spring_clicked, connector: sms_mem}}
      else:
        - send: {{channel: sms, template: spring_not_clicked, connector: sms_mem}}
"""

CUSTOMERS = """external_id,name,phone,city,consent_sms
c1,李雷,13800000001,杭州,1
c2,看http://evil.example/x,13800000002,杭州,1
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _world(db_url, tmp_path, *, sandbox: bool = False, definitions: str = DEFINITIONS):
    clock = Clock(NOW)
    settings = Settings(instance_path=tmp_path, database_url=db_url, secret_key="click-secret",
                        timezone="Asia/Shanghai", base_url=BASE, connector_sandbox=sandbox)
    app = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock}, settings=settings)
    services = app.extensions["promoflow"]
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "spring.yaml").write_text(definitions, encoding="utf-8")
    publish_paths(services.session_factory, [*library_paths(), folder], now=NOW - timedelta(days=1), by="test")
    csv = tmp_path / "customers.csv"
    csv.write_text(CUSTOMERS, encoding="utf-8")
    report = import_customers(services.session_factory, csv, now=NOW - timedelta(days=1))
    assert not report.errors
    ticks = dict(tick_functions(services))

    def run(at: datetime) -> None:
        clock.now = at
        ticks["automation"](at)
        ticks["dispatch"](at)

    return app, services, run, clock


@pytest.fixture
def world(db_engine, db_url, tmp_path):
    return _world(db_url, tmp_path)


def _signed_in(app, name: str, password: str):
    client = app.test_client()
    page = client.get("/login")
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    assert client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token}).status_code == 302
    return client


def _customer_ids(sf) -> dict[str, int]:
    with sf() as s:
        return {ext: cid for ext, cid in s.execute(text("SELECT external_id, id FROM customers"))}


def _delivered(connector_id: str = "sms_mem") -> dict[str, str]:
    """What the memory provider received, by recipient (phone)."""
    mem = MemoryConnector.named(connector_id)
    assert mem is not None
    return {s.message.recipient.removeprefix("+86"): s.message.body for s in mem.sent}


def _templates_of(sf, customer_id: int) -> list[str]:
    with sf() as s:
        return [t for (t,) in s.execute(select(OutboxMessage.template_id)
                                        .where(OutboxMessage.customer_id == customer_id,
                                               OutboxMessage.rule_id == "spring_click")
                                        .order_by(OutboxMessage.id))]


def test_a_click_is_recorded_redirects_to_the_template_url_and_steers_the_journey(world):
    app, services, run, clock = world
    sf = services.session_factory
    ids = _customer_ids(sf)
    run(NOW + timedelta(hours=1))  # 10:00 local: the rule runs, the dispatcher delivers
    bodies = {phone[-1]: body for phone, body in _delivered().items() if "春季新品" in body}
    assert set(bodies) == {"1", "2"}
    links = short_tokens(bodies["1"], BASE)
    assert len(links) == 1 and len(links[0]) == TOKEN_LENGTH
    assert f"{BASE}/c/{links[0]} " in bodies["1"]
    assert URL not in bodies["1"]
    # The URL from the customer's name is not the template's: left as text, never a short link.
    assert "http://evil.example/x" in bodies["2"]
    assert len(re.findall(r"/c/", bodies["2"])) == 1
    with sf() as s:
        stored = {u for (u,) in s.execute(select(ClickLink.url))}
    assert stored == {URL}

    client = app.test_client()
    clock.now = NOW + timedelta(hours=2)
    response = client.get(f"/c/{links[0]}")
    assert response.status_code == 302 and response.headers["Location"] == URL
    again = client.get(f"/c/{links[0]}")
    assert again.status_code == 302 and again.headers["Location"] == URL
    with sf() as s:
        events = s.execute(select(Event.subject_id, Event.payload).where(Event.name == "message.clicked")).all()
        clicks = s.scalar(select(func.count()).select_from(LinkClick))
    assert len(events) == 1 and events[0][0] == str(ids["c1"])  # one event per (message, link) …
    payload = events[0][1]
    assert payload["link"] == URL and payload["rule_id"] == "spring_click" and payload["customer_id"] == ids["c1"]
    assert clicks == 2  # … but every click counts
    message_id = payload["message_id"]
    services.accounts.add_user("mk", roles=["marketing"], password="mk-password-1", now=NOW)
    detail = _signed_in(app, "mk", "mk-password-1").get(f"/messages/{message_id}")
    assert f'data-token="{links[0]}"' in detail.text and "点击 2 次" in detail.text

    run(NOW + timedelta(days=2, hours=1))  # the wait is over: the `if` is decided
    run(NOW + timedelta(days=3, hours=1))
    assert _templates_of(sf, ids["c1"]) == ["spring_link", "spring_clicked"]
    assert _templates_of(sf, ids["c2"]) == ["spring_link", "spring_not_clicked"]


def test_tampered_unknown_and_malformed_tokens_are_a_friendly_404(world):
    app, services, run, _ = world
    run(NOW + timedelta(hours=1))
    body = next(b for b in _delivered().values() if "春季新品" in b)
    token = re.search(r"/c/([0-9A-Za-z]+)", body).group(1)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    client = app.test_client()
    for bad in (tampered, "0000000000", "short", token + "x", "..%2F..%2Fevil"):
        response = client.get(f"/c/{bad}")
        assert response.status_code == 404, bad
        assert "Location" not in response.headers
        assert "链接无效" in response.text
    english = client.get(f"/c/{tampered}?lang=en")
    assert english.status_code == 404 and "Link not found" in english.text
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LinkClick)) == 0
        assert s.scalar(select(func.count()).select_from(Event).where(Event.name == "message.clicked")) == 0


def test_a_head_request_of_a_link_scanner_redirects_without_counting(world):
    app, services, run, _ = world
    run(NOW + timedelta(hours=1))
    body = next(b for b in _delivered().values() if "李雷" in b)
    token = re.search(r"/c/([0-9A-Za-z]+)", body).group(1)
    response = app.test_client().head(f"/c/{token}")
    assert response.status_code == 302 and response.headers["Location"] == URL
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LinkClick)) == 0


def test_only_urls_written_literally_in_the_template_are_tracked():
    assert template_urls(["看 https://a.cn/x?y=1，再看 https://b.cn/{{ id }} 与 {{ base_url }}/p。"]) == {
        "https://a.cn/x?y=1"}
    assert template_urls(['<a href="https://a.cn/p">go</a>. See https://c.cn/d.']) == {
        "https://a.cn/p", "https://c.cn/d"}
    # The installation's own address counts as written; other Jinja in the URL still does not.
    assert template_urls(["看 {{ base_url }}/p，{{base_url}}/q?x=1 与 {{ base_url }}/c/{{ customer.id }}。"],
                         "https://p.example.cn") == {"https://p.example.cn/p", "https://p.example.cn/q?x=1"}
    assert template_urls(["{{ base_url }}/p"], "") == frozenset()  # no address set: nothing to track


def test_a_link_written_with_the_base_url_variable_is_a_short_link_too(db_engine, db_url, tmp_path):
    app, _services, run, _clock = _world(db_url, tmp_path, definitions=DEFINITIONS.replace(
        "template: spring_link,", "template: spring_app,"))
    run(NOW + timedelta(hours=1))
    body = next(b for phone, b in _delivered().items() if phone.endswith("1") and "会员中心" in b)
    [token] = short_tokens(body, BASE)
    assert f"{BASE}/app?from=sms" not in body
    response = app.test_client().get(f"/c/{token}")
    assert response.status_code == 302 and response.headers["Location"] == f"{BASE}/app?from=sms"


def test_the_sandbox_inbox_shows_the_short_link_and_following_it_counts(db_engine, db_url, tmp_path):
    app, services, run, clock = _world(db_url, tmp_path, sandbox=True)
    run(NOW + timedelta(hours=1))
    with services.session_factory() as s:
        statuses = {st for (st,) in s.execute(select(OutboxMessage.status)
                                              .where(OutboxMessage.rule_id == "spring_click"))}
    assert statuses == {"sent"}
    services.accounts.add_user("mk", roles=["marketing"], password="mk-password-1", now=NOW)
    inbox = _signed_in(app, "mk", "mk-password-1").get("/sandbox?channel=sms")
    assert inbox.status_code == 200 and "短信" in inbox.text
    hrefs = re.findall(rf'<a href="({re.escape(BASE)}/c/[0-9A-Za-z]+)"', inbox.text)
    assert len(hrefs) == 2  # one per customer, as links
    assert '<a href="http://evil.example/x"' in inbox.text  # linked like a phone would, but not a tracked link
    followed = app.test_client().get(hrefs[0].removeprefix(BASE))
    assert followed.status_code == 302 and followed.headers["Location"] == URL
    with services.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LinkClick)) == 1
