"""Concurrency on both databases: many threads acting on one task produce
exactly one transition; approvers of one 会签 step acting at once all count."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.records import RecordService
from engine.storage.models import Event, Task
from engine.workflows import StaleTask, TaskClosed, WorkflowService

from .conftest import NOW, activity
from .test_service import assert_replays

THREADS = 8


def race(n: int, target: object) -> list[object]:
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = target(i)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - the outcome is what we assert on
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("expected", [False, True], ids=["no_version", "expected_version"])
def test_many_clicks_on_one_task_make_one_transition(records: RecordService, workflows: WorkflowService,
                                                      published: sessionmaker[Session], expected: bool) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    [task] = workflows.tasks_for("mm")
    version = task.version if expected else None
    actions = ["approve", "reject", "return", "approve"] * (THREADS // 4)

    results = race(THREADS, lambda i: workflows.act(task.id, actor="mm", action=actions[i], now=NOW,
                                                    expected_version=version))

    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1, results
    assert all(isinstance(r, (TaskClosed, StaleTask)) for r in losses), losses
    assert all(r.current is not None for r in losses)  # type: ignore[attr-defined]
    view = workflows.instance_for_record(rec.id)
    assert view is not None
    acted = [h for h in view.history if h["actor"] == "mm" and h["action"] in ("approve", "reject", "return")]
    assert len(acted) == 1
    with published() as s:
        assert s.scalar(select(Task.version).where(Task.id == task.id)) == task.version + 1
        created = s.scalar(select(func.count()).select_from(Event).where(Event.name == "task.created"))
    assert created == (3 if acted[0]["action"] == "approve" else 1)
    assert_replays(workflows, published, rec.id)


def test_countersigners_acting_at_once_all_count(records: RecordService, workflows: WorkflowService,
                                                 published: sessionmaker[Session]) -> None:
    rec = records.create("activity_request", activity(), actor="staff", now=NOW)
    workflows.act(workflows.tasks_for("mm")[0].id, actor="mm", action="approve", now=NOW)
    tasks = {u: workflows.tasks_for(u)[0].id for u in ("f1", "f2")}
    users = ["f1", "f2"] * (THREADS // 2)

    results = race(THREADS, lambda i: workflows.act(tasks[users[i]], actor=users[i], action="approve", now=NOW))

    ok = Counter(users[i] for i, r in enumerate(results) if not isinstance(r, Exception))
    assert ok == {"f1": 1, "f2": 1}, results
    assert all(isinstance(r, TaskClosed) for r in results if isinstance(r, Exception))
    view = workflows.instance_for_record(rec.id)
    assert view is not None and view.status == "approved"
    with published() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.name == "workflow.approved")) == 1
    assert_replays(workflows, published, rec.id)
