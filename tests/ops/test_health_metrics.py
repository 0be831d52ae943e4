"""/healthz, /readyz and /metrics through the app's own doors (issue 17)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from engine.storage.migrate import downgrade, head_revision, upgrade
from tests.datain.conftest import NOW


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _sum(samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def test_healthz_needs_nothing_and_touches_no_database(app) -> None:
    from sqlalchemy import event

    engine = app.extensions["promoflow"].db_engine
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = app.test_client().get("/healthz")
        assert statements == []
        assert app.test_client().get("/readyz").status_code == 200 and statements  # the listener does see queries
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    assert response.headers["X-Request-Id"]


def test_readyz_ready_then_not_ready_one_migration_behind(app) -> None:
    client = app.test_client()
    engine = app.extensions["promoflow"].db_engine
    ready = client.get("/readyz")
    body = ready.get_json()
    assert ready.status_code == 200, body
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["current"] == head_revision()
    assert "not set" in body["checks"]["broker"]["skipped"]
    assert body["checks"]["scheduler"]["held"] is False  # no worker runs in this test
    assert "database_url" not in ready.text and "postgresql://" not in ready.text and "sqlite:///" not in ready.text

    downgrade(engine, "-1")
    behind = client.get("/readyz")
    assert behind.status_code == 503
    migrations = behind.get_json()["checks"]["migrations"]
    assert migrations["ok"] is False and migrations["current"] != migrations["head"] == head_revision()
    upgrade(engine)
    assert client.get("/readyz").status_code == 200


def test_readyz_broker_down_is_not_ready(app) -> None:
    services = app.extensions["promoflow"]
    services.settings = replace(services.settings, broker_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["broker"] == {"ok": False, "scheme": "redis",
                                                       "error": "ConnectionRefusedError"}


def test_readyz_names_the_scheduler_holding_the_lock(app) -> None:
    from web.leader import LeaderLock

    lock = LeaderLock(app.extensions["promoflow"].db_engine)
    assert lock.acquire()
    try:
        body = app.test_client().get("/readyz").get_json()
        assert body["checks"]["scheduler"]["held"] is True and body["checks"]["scheduler"]["holder"]
        metrics = _samples(app.test_client().get("/metrics").text)
        assert metrics[("promoflow_scheduler_leader", ())] == 1.0
    finally:
        lock.release()
    assert _samples(app.test_client().get("/metrics").text)[("promoflow_scheduler_leader", ())] == 0.0


def test_metrics_queue_depth_of_a_queued_message_and_request_histogram(api, app, worker_tick) -> None:
    client = app.test_client()
    before = _samples(client.get("/metrics").text)
    assert _sum(before, "promoflow_queue_depth") == 0
    cid = api("POST", "/customers", json={"phone": "13800000001", "email": "new@example.com", "name": "新会员",
                                          "consent": {"email": True, "sms": True}}).get_json()["id"]
    worker_tick(NOW + timedelta(minutes=1))  # the welcome journey queues one email
    listed = api("GET", "/messages", as_="admin", query_string={"status": "queued"}).get_json()
    queued = [m for m in listed["items"] if m.get("customer_id") == cid] if "items" in listed else listed
    after = _samples(client.get("/metrics").text)
    assert _sum(after, "promoflow_queue_depth") == 1
    assert _sum(after, "promoflow_outbox_messages", status="queued") == 1
    assert queued, listed
    assert _sum(after, "promoflow_rule_entered_total") >= 1  # the welcome journey's run
    # The API call above is in the latency histogram, by endpoint and status.
    assert _sum(after, "promoflow_http_request_duration_seconds_count", status="201", method="POST") >= 1
    assert _sum(after, "promoflow_http_request_duration_seconds_count", endpoint="metrics.metrics") >= 1


def test_metrics_only_from_loopback_or_with_the_token(app) -> None:
    client = app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=remote).status_code == 403
    services = app.extensions["promoflow"]
    services.settings = replace(services.settings, metrics_token="s3cret-token")
    assert client.get("/metrics", environ_base=remote).status_code == 403
    assert client.get("/metrics").status_code == 403  # with a token set, loopback needs it too
    assert client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer wrong"}).status_code == 403
    ok = client.get("/metrics", environ_base=remote, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and "promoflow_queue_depth" in ok.text


def test_request_id_echoed_or_generated_and_in_json_logs(app) -> None:
    import io

    from web.logs import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("json", "INFO", stream=stream)
    try:
        client = app.test_client()
        given = client.get("/healthz", headers={"X-Request-Id": "abc-123.x"})
        forged = client.get("/healthz", headers={"X-Request-Id": "bad id \"level\": <x>"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert given.headers["X-Request-Id"] == "abc-123.x"
    generated = forged.headers["X-Request-Id"]
    assert generated != "bad id" and len(generated) == 32
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "promoflow.http"]
    assert [(a["request_id"], a["status"], a["path"]) for a in access] == [("abc-123.x", 200, "/healthz"),
                                                                          (generated, 200, "/healthz")]


def _validator(doc: dict, name: str):
    from jsonschema import Draft202012Validator

    # Resolve the document's local $refs by validating against the whole components section.
    schema = {"$defs": doc["components"]["schemas"], "$ref": f"#/$defs/{name}"}
    return Draft202012Validator(json.loads(json.dumps(schema).replace("#/components/schemas/", "#/$defs/")))


def test_health_and_readiness_fit_the_openapi_document(app) -> None:
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["paths"]["/readyz"]["servers"] == [{"url": "/", "description": "The site root (not under /api/v1)"}]
    assert set(doc["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    _validator(doc, "Health").validate(client.get("/healthz").get_json())
    _validator(doc, "Readiness").validate(client.get("/readyz").get_json())
    downgrade(app.extensions["promoflow"].db_engine, "-1")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    _validator(doc, "Readiness").validate(not_ready.get_json())
    services = app.extensions["promoflow"]
    services.settings = replace(services.settings, broker_url="amqp://127.0.0.1:1/")
    _validator(doc, "Readiness").validate(client.get("/readyz").get_json())
