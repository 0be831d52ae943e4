"""Follow-up tasks from rules (issue 12, part 3), end to end on both databases.

A detractor answers the public survey page → the scheduler's tick (fake clock)
runs the shipped ``nps_detractor_followup`` rule → a task sits in the inbox of
the manager of the customer's store (page and API) → reminders and an
escalation when overdue, as approval tasks get → done with an outcome and a
comment through the API or the page → the response time is recorded and shown
on the customer page, and a ``task.done`` event is written. The shipped
``renewal_reminder`` rule gives its task to the customer's account manager.

Customers are seeded as CRM history (see ``_history``); feedback, journeys,
tasks, events and messages are made only by the product.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from jsonschema import Draft202012Validator
from sqlalchemy import func, select
from web_support import NOW, PASSWORD, bearer, csrf_from

from engine.feedback.links import sign_survey
from engine.storage.database import transaction
from engine.storage.models import AuditEntry, Customer, Event, Journey, OutboxMessage, Task, User
from engine.storage.times import to_db_time
from web.scheduler import SchedulerHost
from web.worker import tick_functions

STAFF = {"mgr_sh": ["store_manager"], "mgr_bj": ["store_manager"], "am": ["account_manager"],
         "am_boss": ["account_manager"]}


@pytest.fixture
def world(app: Flask) -> Flask:
    """Staff through the account service, and the CRM's customers as history."""
    accounts = app.extensions["promoflow"].accounts
    for name, roles in STAFF.items():
        accounts.add_user(name, roles=roles, password=PASSWORD, now=NOW, display_name=name.upper())
    accounts.set_store("mgr_sh", "SH001")
    accounts.set_store("mgr_bj", "BJ002")
    accounts.set_manager("am", "am_boss")
    _history(app)
    return app


def _history(app: Flask) -> None:
    """History seeding (allowed in a fixture): the customers a CRM import
    brought in before the test starts; customer 1 shops at store SH001,
    customer 2 is a B2B account of ``am`` whose contract ends in 90 days."""
    services = app.extensions["promoflow"]
    stamp = to_db_time(NOW - timedelta(days=400))
    with transaction(services.session_factory) as s:
        am_id = s.execute(select(User.id).where(User.username == "am")).scalar_one()
        s.add(Customer(id=1, name="王芳", phone="13800000001", timezone="Asia/Shanghai", attrs={"store": "SH001"},
                       total_spent=Decimal(0), created_at=stamp, updated_at=stamp))
        s.add(Customer(id=2, name="远航科技", phone="13800000002", timezone="Asia/Shanghai", account_manager_id=am_id,
                       contract_end=date(2025, 5, 30), total_spent=Decimal(0), created_at=stamp, updated_at=stamp))
        s.add(Customer(id=3, name="李雷", phone="13800000003", timezone="Asia/Shanghai", total_spent=Decimal(0),
                       created_at=stamp, updated_at=stamp))  # no store known


def _host(app: Flask) -> SchedulerHost:
    """The product's tick, without delivery (no provider is reachable from tests)."""
    services = app.extensions["promoflow"]
    ticks = [t for t in tick_functions(services) if t[0] in ("automation", "approvals", "tasks")]
    return SchedulerHost(services.session_factory.kw["bind"], ticks, clock=services.now, host_id="test")


def _tick(app: Flask) -> Any:
    result = _host(app).tick()
    assert not result.errors, result.errors
    return result


def _answer_survey(app: Flask, score: int, customer_id: int = 1) -> None:
    token = sign_survey("test-secret", customer_id=customer_id, campaign="spring_sale",
                        expires=NOW + timedelta(days=7))
    client = app.test_client()
    page = client.get(f"/survey/{token}")
    assert page.status_code == 200
    assert client.post(f"/survey/{token}", data={"csrf_token": csrf_from(page.text), "score": str(score)}
                       ).status_code == 200


def _login(app: Flask, name: str, lang: str | None = None) -> Any:
    client = app.test_client()
    page = client.get("/login")
    response = client.post("/login", data={"username": name, "password": PASSWORD,
                                           "csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    if lang:
        client.get(f"/inbox?lang={lang}")
    return client


def _token(app: Flask, name: str) -> dict[str, str]:
    return bearer(app.extensions["promoflow"].accounts.create_token(name, now=NOW))


def _followups(app: Flask, name: str, status: str = "open") -> list[dict[str, Any]]:
    response = app.test_client().get(f"/api/v1/tasks?status={status}", headers=_token(app, name))
    assert response.status_code == 200
    return response.get_json()["followups"]  # type: ignore[no-any-return]


def _schema(app: Flask, name: str) -> Draft202012Validator:
    doc = app.test_client().get("/api/v1/openapi.json").get_json()
    return Draft202012Validator({**doc["components"]["schemas"][name], "components": doc["components"]})


def test_detractor_task_reaches_the_store_manager_and_is_done_with_an_outcome(world: Flask, clock) -> None:
    app = world
    _answer_survey(app, 3)
    _tick(app)
    _tick(app)  # a second tick at the same time creates nothing twice

    tasks = _followups(app, "mgr_sh")
    assert [(t["title"], t["customer_id"], t["status"], t["rule_id"]) for t in tasks] == [
        ("24小时内回访不满意客户", 1, "open", "nps_detractor_followup")]
    task = tasks[0]
    assert task["due_at"] == (NOW + timedelta(hours=24)).isoformat() and task["overdue"] is False
    assert [o["id"] for o in task["outcomes"]] == ["contacted", "resolved", "no_answer", "declined"]
    assert _followups(app, "mgr_bj") == [] and _followups(app, "clerk") == []  # another store; no store
    listing = app.test_client().get("/api/v1/tasks", headers=_token(app, "mgr_sh")).get_json()
    _schema(app, "TaskList").validate(listing)
    assert listing["counts"]["open"] == 1  # the inbox badge counts it

    # the assignee's notice: a WeCom text card linking to the task
    with app.extensions["promoflow"].session_factory() as s:
        notices = s.execute(select(OutboxMessage).where(OutboxMessage.template_id == "task_assigned")).scalars().all()
        assert [(m.channel, m.recipient) for m in notices] == [("wecom", "mgr_sh")]
        assert notices[0].payload["params"]["url"].endswith(f"/tasks/{task['id']}")

    # the inbox and the task page
    client = _login(app, "mgr_sh")
    inbox = client.get("/inbox")
    assert inbox.status_code == 200 and "跟进任务" in inbox.text and "24小时内回访不满意客户" in inbox.text
    assert f'data-task="{task["id"]}"' in inbox.text and "王芳" in inbox.text
    page = client.get(f"/tasks/{task['id']}")
    assert page.status_code == 200 and "完成任务" in page.text and "未接通" in page.text
    assert _login(app, "staff").get(f"/tasks/{task['id']}").status_code == 403
    english = _login(app, "mgr_sh", lang="en").get(f"/tasks/{task['id']}")
    assert "Call the unhappy customer back within 24 hours" in english.text and "No answer" in english.text

    # bad input: 422 with field errors; someone else: 403
    api = app.test_client()
    headers = _token(app, "mgr_sh")
    bad = api.post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "happy"}, headers=headers)
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "outcome"
    assert api.post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "contacted", "x": 1},
                    headers=headers).status_code == 422
    assert api.post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "contacted"},
                    headers=_token(app, "mgr_bj")).status_code == 403
    assert api.post("/api/v1/tasks/999999/done", json={"outcome": "contacted"}, headers=headers).status_code == 404

    # done, 5 hours 30 minutes after it was created
    clock.now = NOW + timedelta(hours=5, minutes=30)
    done = api.post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "resolved", "comment": "已致电，补发赠品",
                                                             "version": task["version"]}, headers=headers)
    assert done.status_code == 200, done.text
    body = done.get_json()
    _schema(app, "RuleTask").validate(body)
    assert (body["status"], body["outcome"], body["comment"], body["response_seconds"]) == (
        "done", "resolved", "已致电，补发赠品", 5 * 3600 + 30 * 60)
    again = api.post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "contacted"}, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "task_closed"
    assert _followups(app, "mgr_sh") == [] and len(_followups(app, "mgr_sh", "done")) == 1

    with app.extensions["promoflow"].session_factory() as s:
        event = s.execute(select(Event).where(Event.name == "task.done")).scalar_one()
        assert (event.subject_type, event.subject_id) == ("customer", "1")
        assert event.payload["outcome"] == "resolved" and event.payload["response_seconds"] == 19800
        assert s.execute(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "task.done")
                         ).scalar() == 1

    # the customer page shows it: status, assignee, outcome, response time
    detail = _login(app, "manager").get("/customers/1")
    assert detail.status_code == 200 and "跟进任务" in detail.text
    assert 'data-status="done"' in detail.text and "mgr_sh" in detail.text
    assert "已解决" in detail.text and "5小时30分" in detail.text and 'data-seconds="19800"' in detail.text


def test_overdue_detractor_task_is_reminded_and_escalated(world: Flask, clock) -> None:
    app = world
    _answer_survey(app, 1)
    _tick(app)
    task = _followups(app, "mgr_sh")[0]

    clock.now = NOW + timedelta(hours=23)
    assert _tick(app).results["tasks"].tasks == 0  # not due yet
    clock.now = NOW + timedelta(hours=24, minutes=1)
    report = _tick(app).results["tasks"]
    assert (report.reminders, report.escalations) == (1, 1)
    assert _tick(app).results["tasks"].tasks == 0  # idempotent at the same time

    overdue = _followups(app, "mgr_sh")[0]
    assert overdue["overdue"] is True and overdue["reminders"] == 1 and overdue["escalated"] is True
    escalated = _followups(app, "manager")  # marketing_manager: the step's escalate_to
    assert [(t["title"], t["origin"], t["customer_id"]) for t in escalated] == [
        ("24小时内回访不满意客户", "escalation", 1)]
    with app.extensions["promoflow"].session_factory() as s:
        sent = sorted((m.template_id, m.recipient) for m in s.execute(select(OutboxMessage).where(
            OutboxMessage.template_id.in_(("task_assigned", "task_reminder")))).scalars())
    assert sent == [("task_assigned", "manager"), ("task_assigned", "mgr_sh"), ("task_reminder", "mgr_sh")]

    clock.now = NOW + timedelta(hours=28, minutes=2)  # remind_every: 4h
    report = _tick(app).results["tasks"]
    assert report.reminders == 1 and report.escalations == 0
    assert _followups(app, "mgr_sh")[0]["reminders"] == 2

    # the escalated manager does it through the page; the store manager's copy closes
    client = _login(app, "manager")
    page = client.get(f"/tasks/{escalated[0]['id']}")
    assert page.status_code == 200
    done = client.post(f"/tasks/{escalated[0]['id']}/done", data={
        "csrf_token": csrf_from(page.text), "outcome": "no_answer", "comment": "两次未接通",
        "version": str(escalated[0]["version"])})
    assert done.status_code == 302
    assert _followups(app, "mgr_sh") == []
    closed = {t["assignee"]: t["status"] for t in _followups(app, "mgr_sh", "all") + _followups(app, "manager", "all")}
    assert closed == {"mgr_sh": "cancelled", "manager": "done"}
    clock.now = NOW + timedelta(days=3)
    assert _tick(app).results["tasks"].tasks == 0  # nothing more for closed tasks
    stale = _login(app, "mgr_sh").get(f"/tasks/{task['id']}")
    assert stale.status_code == 200 and "已由他人完成" in stale.text


def test_done_form_refuses_a_missing_outcome_with_the_reason(world: Flask) -> None:
    app = world
    _answer_survey(app, 5)
    _tick(app)
    task = _followups(app, "mgr_sh")[0]
    client = _login(app, "mgr_sh")
    page = client.get(f"/tasks/{task['id']}")
    refused = client.post(f"/tasks/{task['id']}/done", data={"csrf_token": csrf_from(page.text), "outcome": ""})
    assert refused.status_code == 422 and "请选择一个结果" in refused.text
    assert _followups(app, "mgr_sh")[0]["status"] == "open"


def test_renewal_task_goes_to_the_account_manager_and_escalates_to_their_manager(world: Flask, clock) -> None:
    app = world
    start = NOW - timedelta(minutes=59, seconds=30)  # 09:00:30 in Shanghai: the date trigger's time
    clock.now = start
    _tick(app)  # the contract ends in 90 days: today's occurrence enters customer 2
    with app.extensions["promoflow"].session_factory() as s:
        assert s.execute(select(Journey.rule_id, Journey.subject_id).where(
            Journey.rule_id == "renewal_reminder")).all() == [("renewal_reminder", 2)]
    tasks = _followups(app, "am")
    assert [(t["title"], t["customer_id"], t["due_at"]) for t in tasks] == [
        ("联系客户洽谈续约与升级方案", 2, (start + timedelta(days=14)).isoformat())]
    assert [o["id"] for o in tasks[0]["outcomes"]] == ["renewed", "contacted", "declined"]
    assert _followups(app, "outsider") == []  # another account manager

    clock.now = start + timedelta(days=14, hours=1)
    report = _tick(app).results["tasks"]
    assert (report.reminders, report.escalations) == (1, 1)
    boss = _followups(app, "am_boss")
    assert [(t["customer_id"], t["origin"]) for t in boss] == [(2, "escalation")]

    api = app.test_client()
    done = api.post(f"/api/v1/tasks/{tasks[0]['id']}/done", json={"outcome": "renewed"}, headers=_token(app, "am"))
    assert done.status_code == 200 and done.get_json()["response_seconds"] == (14 * 24 + 1) * 3600
    assert _followups(app, "am_boss") == []
    detail = _login(app, "manager", lang="en").get("/customers/2")
    assert "Renewed" in detail.text and "14 d 1 h" in detail.text


def test_a_repeated_journey_batch_writes_each_task_once(world: Flask) -> None:
    """The unique key (journey, step, assignee) and ON CONFLICT DO NOTHING:
    running the rule's journeys again inserts no second task."""
    app = world
    _answer_survey(app, 2)
    _tick(app)
    services = app.extensions["promoflow"]
    with services.session_factory() as s:
        journey = s.execute(select(Journey).where(Journey.rule_id == "nps_detractor_followup")).scalar_one()
        before = s.execute(select(func.count()).select_from(Task).where(Task.kind == "rule")).scalar()
    from engine.automation.journeys import run_journeys
    from engine.automation.policy import Policy
    from engine.storage import automation_repo

    with transaction(services.session_factory) as s:  # replay the batch the worker ran (as after a crash)
        rows = [r for r in automation_repo.journeys_of(s, "nps_detractor_followup") if r.id == journey.id]
        replay = [automation_repo.JourneyRow(**{**r.__dict__, "step_index": 0}) for r in rows]
        run_journeys(s, replay, now=NOW, definitions=services.registry.current(), policy=Policy())
    with services.session_factory() as s:
        assert s.execute(select(func.count()).select_from(Task).where(Task.kind == "rule")).scalar() == before == 1
        assert s.execute(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.template_id == "task_assigned")).scalar() == 1


def test_without_a_store_every_store_manager_gets_it_and_one_closes_it(world: Flask) -> None:
    """A customer with no ``store``: each holder of the role gets a task; three
    of them marking theirs done at the same moment close it exactly once."""
    import threading

    app = world
    _answer_survey(app, 4, customer_id=3)
    _tick(app)
    names = ("clerk", "mgr_sh", "mgr_bj")
    mine = {name: _followups(app, name) for name in names}
    assert all([t["customer_id"] for t in tasks] == [3] for tasks in mine.values()), mine
    headers = {name: _token(app, name) for name in names}
    barrier = threading.Barrier(len(names))
    codes: dict[str, int] = {}

    def close(name: str) -> None:
        client = app.test_client()
        barrier.wait()
        codes[name] = client.post(f"/api/v1/tasks/{mine[name][0]['id']}/done", json={"outcome": "contacted"},
                                  headers=headers[name]).status_code

    threads = [threading.Thread(target=close, args=(name,)) for name in names]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert sorted(codes.values()) == [200, 409, 409], codes
    statuses = sorted(_followups(app, name, "all")[0]["status"] for name in names)
    assert statuses == ["cancelled", "cancelled", "done"]
    with app.extensions["promoflow"].session_factory() as s:
        assert s.execute(select(func.count()).select_from(Event).where(Event.name == "task.done")).scalar() == 1


def test_task_done_triggers_rules(world: Flask, clock, tmp_path) -> None:
    """``task.done`` is a catalog event with the customer as subject: a rule
    can act on the outcome (here: tag customers nobody could reach)."""
    from engine.library import library_paths
    from engine.publishing import publish_paths
    from engine.storage.models import CustomerTag

    app = world
    (tmp_path / "unreached.yaml").write_text(
        "kind: rule\nid: unreached_detractor\ntitle: 未接通客户\nclass: transactional\n"
        "trigger: {event: task.done, when: {outcome: no_answer}}\nsteps:\n  - add_tag: unreached\n",
        encoding="utf-8")
    services = app.extensions["promoflow"]
    publish_paths(services.session_factory, [*library_paths(), tmp_path / "unreached.yaml"], now=NOW, by="test")
    _answer_survey(app, 2)
    _tick(app)
    task = _followups(app, "mgr_sh")[0]
    refused = app.test_client().post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": 7},
                                     headers=_token(app, "mgr_sh"))
    assert refused.status_code == 422
    _schema(app, "ValidationErrors").validate(refused.get_json())
    clock.now = NOW + timedelta(hours=2)
    assert app.test_client().post(f"/api/v1/tasks/{task['id']}/done", json={"outcome": "no_answer"},
                                  headers=_token(app, "mgr_sh")).status_code == 200
    _tick(app)
    with services.session_factory() as s:
        tags = set(s.execute(select(CustomerTag.tag).where(CustomerTag.customer_id == 1)).scalars())
    assert {"nps_detractor", "unreached"} <= tags
