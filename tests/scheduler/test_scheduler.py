"""The scheduler host: one active scheduler per database, the others stand by
and take over when it goes; ticks run with one `now` and survive a failing part."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

from sqlalchemy import Engine

from web.leader import LeaderLock
from web.scheduler import SchedulerHost

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


def test_only_one_leader_per_database(db_engine: Engine, tmp_path) -> None:
    first, second = LeaderLock(db_engine, lock_dir=tmp_path), LeaderLock(db_engine, lock_dir=tmp_path)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.still_held()
    first.release()
    assert second.acquire() is True
    second.release()


def test_a_killed_leader_hands_over(db_url: str, db_engine: Engine, tmp_path) -> None:
    """SIGKILL the process holding the lock: the OS (flock) or the server
    (advisory lock) releases it and a standby can lead."""
    code = textwrap.dedent(f"""
        import sys, time
        from engine.storage.database import make_engine
        from web.leader import LeaderLock
        lock = LeaderLock(make_engine({db_url!r}), lock_dir={str(tmp_path)!r})
        assert lock.acquire()
        print("leading", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "leading"
        standby = LeaderLock(db_engine, lock_dir=tmp_path)
        assert standby.acquire() is False
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not standby.acquire():
            assert time.monotonic() < deadline, "the lock was not released by the dead process"
            time.sleep(0.1)
        standby.release()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tick_runs_every_part_with_one_now_and_survives_a_failure(db_engine: Engine, tmp_path) -> None:
    seen: list[tuple[str, datetime]] = []

    def boom(now: datetime) -> None:
        raise RuntimeError("provider down")

    host = SchedulerHost(db_engine, [("a", lambda now: seen.append(("a", now)) or 1), ("broken", boom),
                                     ("b", lambda now: seen.append(("b", now)) or 2)],
                         clock=lambda: NOW, lock=LeaderLock(db_engine, lock_dir=tmp_path))
    result = host.tick()
    assert seen == [("a", NOW), ("b", NOW)]
    assert result.results == {"a": 1, "b": 2}
    assert result.errors == {"broken": "RuntimeError: provider down"}


def test_active_scheduler_ticks_and_standby_does_not(db_engine: Engine, tmp_path) -> None:
    counts = {"leader": 0, "standby": 0}
    leader = SchedulerHost(db_engine, [("n", lambda now: counts.__setitem__("leader", counts["leader"] + 1))],
                           clock=lambda: NOW, interval=0.2, standby_poll=0.1,
                           lock=LeaderLock(db_engine, lock_dir=tmp_path), host_id="leader")
    standby = SchedulerHost(db_engine, [("n", lambda now: counts.__setitem__("standby", counts["standby"] + 1))],
                            clock=lambda: NOW, interval=0.2, standby_poll=0.1,
                            lock=LeaderLock(db_engine, lock_dir=tmp_path), host_id="standby")
    leader.start()
    standby.start()
    try:
        time.sleep(1.0)
        assert leader.active and not standby.active
        assert counts["leader"] >= 2 and counts["standby"] == 0
        leader.shutdown()
        deadline = time.monotonic() + 5
        while not standby.active:
            assert time.monotonic() < deadline, "the standby did not take over"
            time.sleep(0.05)
        before = counts["standby"]
        time.sleep(0.6)
        assert counts["standby"] > before
    finally:
        leader.shutdown()
        standby.shutdown()


def test_worker_once_runs_one_tick_on_the_configured_database(db_url: str, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from engine.library import library_paths
    from web.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROMOFLOW_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()
    assert runner.invoke(main, ["--database-url", db_url, "publish", *map(str, library_paths())]).exit_code == 0
    result = runner.invoke(main, ["--database-url", db_url, "worker", "--once"])
    assert result.exit_code == 0, result.output
    # A connector without its secret is named first (issue 12: nothing waits without saying why), then the tick.
    warnings = [ln for ln in result.output.splitlines() if ln.startswith("Connector ")]
    assert any("SMTP_PASSWORD" in ln for ln in warnings)
    assert result.output.splitlines()[len(warnings)].startswith("automation: TickReport(")
    assert "approvals: TickReport(" in result.output
