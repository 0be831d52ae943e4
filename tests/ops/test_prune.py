"""``promoflow prune``: what is old goes, what is new or unprocessed stays,
the audit log stays; on both databases (issue 17)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import insert, select, text

from engine.retention import cutoffs
from engine.settings import DEFAULT_RETENTION
from engine.storage.database import transaction
from engine.storage.models import AuditEntry, Event, MessageAttempt, OutboxMessage
from engine.storage.retention import prune
from engine.storage.times import to_db_time
from tests.datain.conftest import NOW
from web.cli import main


def _seed_history(session_factory, tag: str = "h") -> dict[str, int]:
    """HISTORY SEEDING (allowed by the project rules): rows as a year of
    running leaves them, with old timestamps. The product cannot be made to
    write in the past; the rows below stand for what it wrote then."""
    old, older, recent = (to_db_time(NOW - timedelta(days=d)) for d in (200, 400, 10))
    ids: dict[str, int] = {}
    with transaction(session_factory) as s:
        def add(table, key: str, **values) -> None:
            ids[key] = s.execute(insert(table).values(**values).returning(table.c.id)).scalar_one()

        add(Event.__table__, "event_old_done", name="order.paid", created_at=older, processed_at=older)
        add(Event.__table__, "event_old_open", name="order.paid", created_at=older, processed_at=None)
        add(Event.__table__, "event_new_done", name="order.paid", created_at=recent, processed_at=recent)
        for key, status, at in (("sent_old", "sent", old), ("dead_old", "dead", old), ("sent_new", "sent", recent),
                                ("retry_old", "retry", old)):
            add(OutboxMessage.__table__, key, channel="sms", connector="sms_aliyun", recipient="13800000000",
                body=f"body {key}", idempotency_key=f"{tag}-{key}", status=status, attempts=1, created_at=at,
                sent_at=at if status == "sent" else None)
        add(MessageAttempt.__table__, "attempt_old", message_id=ids["sent_old"], attempt=1, at=old, outcome="sent")
        add(MessageAttempt.__table__, "attempt_new", message_id=ids["sent_new"], attempt=1, at=recent, outcome="sent")
        add(AuditEntry.__table__, "audit_old", at=to_db_time(NOW - timedelta(days=1000)), actor="history",
            action="record.create", entity_type="record", entity_id="1")
    return ids


def _state(session_factory) -> dict[str, object]:
    with session_factory() as s:
        return {
            "events": set(s.scalars(select(Event.id))),
            "bodies": {i: b for i, b in s.execute(select(OutboxMessage.id, OutboxMessage.body))},
            "statuses": {i: st for i, st in s.execute(select(OutboxMessage.id, OutboxMessage.status))},
            "attempts": set(s.scalars(select(MessageAttempt.id))),
            "audit": s.execute(text("SELECT count(*) FROM audit_log")).scalar_one(),
        }


def test_prune_removes_the_old_and_keeps_the_new_the_open_and_the_audit(
        app, api, worker_tick, db_url: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    sf = app.extensions["promoflow"].session_factory
    # The product's own work now: a customer posted, the welcome journey queues an email.
    api("POST", "/customers", json={"phone": "13800000001", "email": "new@example.com", "name": "新会员",
                                    "consent": {"email": True, "sms": True}})
    worker_tick(NOW + timedelta(minutes=1))
    ids = _seed_history(sf)
    before = _state(sf)
    queued_now = [i for i, st in before["statuses"].items() if st == "queued"]
    assert queued_now and before["audit"] >= 1

    at = (NOW + timedelta(days=1)).isoformat()
    dry = CliRunner().invoke(main, ["--database-url", db_url, "prune", "--dry-run", "--at", at])
    assert dry.exit_code == 0, dry.output
    assert "events: would delete 1 rows" in dry.output
    assert "outbox: would clear 1 message bodies" in dry.output
    assert "message_attempts: would delete 1 rows" in dry.output
    assert _state(sf) == before

    done = CliRunner().invoke(main, ["--database-url", db_url, "prune", "--at", at])
    assert done.exit_code == 0, done.output
    assert "events: deleted 1 rows" in done.output and "outbox: cleared 1 message bodies" in done.output
    after = _state(sf)
    assert after["events"] == before["events"] - {ids["event_old_done"]}
    assert ids["event_old_open"] in after["events"] and ids["event_new_done"] in after["events"]
    assert after["bodies"][ids["sent_old"]] is None
    assert after["bodies"][ids["dead_old"]] == "body dead_old"  # a dead letter may still be resent
    assert after["statuses"] == before["statuses"]  # rows and statuses stay for counting
    for key in ("sent_new", "retry_old"):
        assert after["bodies"][ids[key]] == f"body {key}"
    assert all(after["bodies"][i] == before["bodies"][i] for i in queued_now)
    assert after["attempts"] == before["attempts"] - {ids["attempt_old"]}
    assert after["audit"] == before["audit"]

    again = CliRunner().invoke(main, ["--database-url", db_url, "prune", "--at", at])
    assert "events: deleted 0 rows" in again.output and _state(sf) == after


def test_prune_works_in_batches(app, db_url: str) -> None:
    sf = app.extensions["promoflow"].session_factory
    for n in range(3):
        _seed_history(sf, tag=f"b{n}")
    steps = prune(sf, cutoffs(DEFAULT_RETENTION, NOW), batch=2)
    assert {s.name: s.rows for s in steps} == {"events": 3, "message_bodies": 3, "attempts": 3}
    with sf() as s:
        assert s.execute(select(OutboxMessage.id).where(OutboxMessage.status == "sent",
                                                        OutboxMessage.created_at < to_db_time(NOW - timedelta(days=90)),
                                                        OutboxMessage.body.is_not(None))).first() is None


def test_rows_that_may_be_resent_keep_their_body() -> None:
    from engine import dispatch
    from engine.storage import retention

    assert set(retention.RESENDABLE) == set(dispatch.RESENDABLE)
