"""Prometheus ``/metrics`` (issue 17), through prometheus_client.

What is in the database (queue depth by status and connector, rule runs and
their counters, whether a scheduler leads) is read at scrape time by a custom
collector with one grouped query each, so every web process reports the same
truth and nothing is kept in memory. What happens in a process (HTTP request
latency by endpoint and status, the scheduler tick parts' durations) is a
histogram; with ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn, or web and worker
sharing a folder) the scrape sums every process's files through
``MultiProcessCollector``.

Access: with a ``metrics_token`` setting, a request must carry
``Authorization: Bearer <token>`` (from anywhere, loopback too, since a
reverse proxy on the same host makes every request look local); without one,
only loopback clients are answered, others get 403.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import services

bp = Blueprint("metrics", __name__)
EXTENSION = "promoflow.metrics"
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")

#: Scheduler tick parts (automation, approvals, dispatch, …): the rule runs'
#: duration as the process that ran them saw it. Process-wide, like the host.
TICK_SECONDS = Histogram("promoflow_tick_part_duration_seconds",
                         "Duration of one part of a scheduler tick (automation = rule runs and journey steps)",
                         ["part", "outcome"], registry=None,
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))


def observe_tick_part(part: str, seconds: float, ok: bool) -> None:
    TICK_SECONDS.labels(part=part, outcome="ok" if ok else "error").observe(seconds)


class DatabaseCollector(Collector):
    """Reads queue depth, rule run totals and leadership from the database at scrape time."""

    def __init__(self, engine: Any):
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from engine.storage.ops_repo import outbox_counts, rule_run_totals

        from .health import leader_status

        outbox = GaugeMetricFamily("promoflow_outbox_messages", "Outbox messages by status and connector",
                                   labels=["status", "connector"])
        queued = GaugeMetricFamily("promoflow_queue_depth",
                                   "Messages waiting to be sent (queued, retry, sending) by connector",
                                   labels=["connector"])
        depth: dict[str, int] = {}
        for row in outbox_counts(self.engine):
            outbox.add_metric([row.status, row.connector], row.count)
            if row.status in ("queued", "retry", "sending"):
                depth[row.connector] = depth.get(row.connector, 0) + row.count
        for connector, count in sorted(depth.items()):
            queued.add_metric([connector], count)
        yield outbox
        yield queued
        runs = CounterMetricFamily("promoflow_rule_runs", "Rule runs by rule and kind", labels=["rule", "kind"])
        entered = CounterMetricFamily("promoflow_rule_entered", "Subjects entered by rule runs",
                                      labels=["rule", "kind"])
        sent = CounterMetricFamily("promoflow_rule_sent", "Messages sent by rule runs", labels=["rule", "kind"])
        errors = CounterMetricFamily("promoflow_rule_errors", "Errors in rule runs", labels=["rule", "kind"])
        for total in rule_run_totals(self.engine):
            labels = [total.rule_id, total.kind]
            runs.add_metric(labels, total.runs)
            entered.add_metric(labels, total.entered)
            sent.add_metric(labels, total.sent)
            errors.add_metric(labels, total.errors)
        yield from (runs, entered, sent, errors)
        leader = GaugeMetricFamily("promoflow_scheduler_leader",
                                   "1 when some process holds the scheduler lock (is the active scheduler)")
        try:
            held = leader_status(self.engine)["held"]
            leader.add_metric([], 1.0 if held else 0.0)
        except Exception:  # noqa: BLE001 - unknown: leave the gauge without a sample
            pass
        yield leader


def _registry(app: Flask) -> CollectorRegistry:
    state = app.extensions[EXTENSION]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(state["database"])
        return registry
    return state["registry"]  # type: ignore[no-any-return]


def _allowed() -> bool:
    token = services().settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())
    return request.remote_addr in LOOPBACK


@bp.get("/metrics")
def metrics() -> Response:
    from flask import current_app

    if not _allowed():
        abort(403)
    return Response(generate_latest(_registry(current_app)), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    """Register ``/metrics`` and the request latency hooks for ``app``."""
    http = Histogram("promoflow_http_request_duration_seconds", "HTTP request latency",
                     ["endpoint", "method", "status"], registry=None)
    database = DatabaseCollector(app.extensions["promoflow"].db_engine)
    registry = CollectorRegistry(auto_describe=False)
    for collector in (http, TICK_SECONDS, database):
        registry.register(collector)
    app.extensions[EXTENSION] = {"registry": registry, "database": database, "http": http}
    app.register_blueprint(bp)

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            endpoint = request.endpoint or "unmatched"  # route names only: bounded label values
            http.labels(endpoint=endpoint, method=request.method,
                        status=str(response.status_code)).observe(time.perf_counter() - started)
        return response


__all__ = ["DatabaseCollector", "TICK_SECONDS", "bp", "init_app", "observe_tick_part"]
