"""Two submissions racing for one unique value: exactly one wins, on both databases."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.forms.errors import ValidationFailed
from engine.records import RecordService
from engine.storage import records_repo
from engine.storage.models import AuditEntry, Record

from .conftest import NOW, redemption


@pytest.mark.parametrize("rounds", [3])
def test_unique_race_exactly_one_wins(
    service: RecordService, published: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, rounds: int
) -> None:
    # Both racers pass the friendly pre-check; the claim in the transaction decides.
    monkeypatch.setattr(records_repo, "unique_taken", lambda *a, **k: False)
    for n in range(rounds):
        code = f"RACE-{n:08d}"
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def submit(actor: str, barrier: threading.Barrier = barrier, code: str = code,
                   outcomes: list[str] = outcomes) -> None:
            barrier.wait()
            try:
                service.create("store_redemption", redemption(code), actor=actor, now=NOW)
                outcomes.append("ok")
            except ValidationFailed as exc:
                outcomes.append(exc.errors[0].code)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                outcomes.append(repr(exc))

        threads = [threading.Thread(target=submit, args=(name,)) for name in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["ok", "unique"], outcomes
    with published() as s:
        assert s.scalar(select(func.count()).select_from(Record)) == rounds
        assert s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.entity_type == "record")) == rounds  # not the publish's entry
