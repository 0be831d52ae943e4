"""The worker's side of operations: tick ids in its log lines, tick part
durations in /metrics, and the daily prune (issue 17)."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from tests.datain.conftest import NOW
from tests.ops.test_prune import _seed_history, _state
from web.retention import retention_tick
from web.scheduler import SchedulerHost
from web.worker import tick_functions


def test_tick_lines_carry_a_tick_id_and_parts_are_timed(app, clock) -> None:
    from web.logs import setup_logging

    services = app.extensions["promoflow"]
    said = logging.getLogger("promoflow.test.tick")
    ticks = [*tick_functions(services), ("say", lambda now: said.info("tick at %s", now.isoformat()))]
    host = SchedulerHost(services.db_engine, ticks, clock=services.now, host_id="ops-test")
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("json", "INFO", stream=stream)
    try:
        host.tick()
        host.tick()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["logger"] == "promoflow.test.tick"]
    assert len(mine) == 2 and all(line.get("tick_id") for line in mine)
    assert mine[0]["tick_id"] != mine[1]["tick_id"]  # one id per tick
    assert "request_id" not in mine[0]
    text = app.test_client().get("/metrics").text
    counts = {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "promoflow_tick_part_duration_seconds_count"}
    assert counts[(("outcome", "ok"), ("part", "automation"))] >= 2
    assert counts[(("outcome", "ok"), ("part", "say"))] >= 2


def test_daily_prune_runs_on_the_first_tick_of_a_day_only(app) -> None:
    services = app.extensions["promoflow"]
    ids = _seed_history(services.session_factory)
    tick = retention_tick(services)
    assert tick(NOW) == {"events": 1, "message_bodies": 1, "attempts": 1}
    _seed_history(services.session_factory, tag="later")
    assert tick(NOW + timedelta(hours=1)) is None  # same day: not again
    assert ids["event_old_done"] not in _state(services.session_factory)["events"]
    assert tick(NOW + timedelta(days=1)) == {"events": 1, "message_bodies": 1, "attempts": 1}
