"""The fleet's parts for the scale-out tests and bench/scale.py: a definitions
project made with ``promoflow init`` and published with ``promoflow publish``,
a bulk history fixture of customers, and the processes (``promoflow serve``,
``promoflow worker``, ``promoflow worker --celery``) started as an operator
would, each with its own environment. Not a test."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("PROMOFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/{db}")
AMQP_URL = os.environ.get("PROMOFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/{vhost}")
ALIYUN_ENV = {"ALIYUN_ACCESS_KEY_ID": "test-key-id", "ALIYUN_ACCESS_KEY_SECRET": "test-key-secret"}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def cli(args: list[str], env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300) -> str:
    """Run ``promoflow ARGS``; its output (fails the caller on a non-zero exit)."""
    done = subprocess.run([sys.executable, "-m", "web.cli", *args], env=dict(env), cwd=cwd, capture_output=True, check=False,
                          text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"promoflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def base_env(db_url: str, instance: Path, broker: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMOFLOW_", "PROMETHEUS_"))}
    env.update(ALIYUN_ENV)
    env.update({"PYTHONPATH": str(ROOT), "PROMOFLOW_DATABASE_URL": db_url, "PROMOFLOW_INSTANCE_PATH": str(instance),
                "PROMOFLOW_SECRET_KEY": "fleet-test-secret", "PROMOFLOW_LOG_FORMAT": "json"})
    if broker:
        env["PROMOFLOW_BROKER_URL"] = broker
    env.update(extra)
    return env


def make_project(folder: Path, env: Mapping[str, str], provider_url: str, *, per_second: int = 2000) -> Path:
    """``promoflow init`` a project and adapt it as a business would for this
    run: the SMS connector speaks to ``provider_url`` with a higher rate
    limit and no send window, the win-back pool has no issue limit, and the
    win-back rule fires every minute without quiet hours (the fleet runs on
    the real clock in separate processes, at whatever hour CI runs it)."""
    cli(["init", str(folder)], env)
    sms = folder / "config" / "connectors" / "sms.yaml"
    body = sms.read_text(encoding="utf-8")
    body = body.replace("endpoint: dysmsapi.aliyuncs.com", f"base_url: {provider_url}")
    body = re.sub(r"per_second: \d+", f"per_second: {per_second}", body)
    body = body.replace("  per_recipient_per_minute: 1\n", "").replace('send_window: "08:00-21:00"\n', "")
    sms.write_text(body, encoding="utf-8")
    pools = folder / "workflows" / "member" / "coupon_pools.yaml"
    pools.write_text(pools.read_text(encoding="utf-8").replace("  budget: 200000\n  max_issued: 10000\n", ""),
                     encoding="utf-8")
    rule = folder / "workflows" / "member" / "winback_90d.yaml"
    text_ = rule.read_text(encoding="utf-8")
    text_ = text_.replace('trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}',
                          'trigger: {schedule: "* * * * *", timezone: Asia/Shanghai}')
    text_ = text_.replace('quiet_hours: "21:00-09:00"\n', "")
    rule.write_text(text_, encoding="utf-8")
    cli(["publish", "--by", "fleet-test"], env, cwd=folder)
    return folder


def bulk_customers(engine: Engine, n: int, now: datetime) -> int:
    """Bulk history fixture (PostgreSQL): ``n`` customers with one order and
    an SMS consent decision each, set-based; every 5th inactive for 91–400
    days, every 2nd consenting, 1% tagged ``vip_blocked``. Returns how many
    match the win-back audience."""
    stamp = now.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    days = "(CASE WHEN n % 5 = 0 THEN 91 + n % 310 ELSE 1 + n % 89 END)"
    with engine.begin() as c:
        c.execute(text(f"""
            INSERT INTO customers (id, name, phone, email, level, last_purchase_at, order_count, total_spent,
                                   timezone, created_at, updated_at)
            SELECT n, 'customer ' || n, '138' || lpad(n::text, 8, '0'), 'c' || n || '@example.com', 'normal',
                   TIMESTAMP '{stamp}' - make_interval(days => {days}), 1, 100, 'Asia/Shanghai',
                   TIMESTAMP '{stamp}', TIMESTAMP '{stamp}'
            FROM generate_series(1, {n}) AS n"""))
        c.execute(text(f"""INSERT INTO orders (customer_id, amount, placed_at, status, created_at)
                          SELECT id, 100, last_purchase_at, 'paid', TIMESTAMP '{stamp}' FROM customers"""))
        c.execute(text(f"""INSERT INTO consents (customer_id, channel, granted, source, updated_at)
                          SELECT id, 'sms', id % 2 = 0, 'bulk', TIMESTAMP '{stamp}' FROM customers"""))
        c.execute(text("INSERT INTO customer_tags (customer_id, tag) SELECT id, 'vip_blocked' FROM customers "
                       "WHERE id % 100 = 10"))
        c.execute(text("SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers))"))
        cut = now.astimezone(UTC).replace(tzinfo=None) - timedelta(days=90)
        matching = c.execute(text("""
            SELECT count(*) FROM customers c WHERE c.last_purchase_at < :cut
              AND EXISTS (SELECT 1 FROM consents s WHERE s.customer_id = c.id AND s.channel = 'sms' AND s.granted)
              AND NOT EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.id AND t.tag = 'vip_blocked')"""),
            {"cut": cut}).scalar_one()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        # Only this schema's tables: a bare ANALYZE walks every schema of the server's database.
        c.exec_driver_sql("ANALYZE customers, orders, consents, customer_tags")
    return int(matching)


@dataclass
class Fleet:
    """Processes started for one test; each is stopped (its own pid) at the end."""

    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen([sys.executable, "-m", "web.cli", *args], env=dict(env), cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL the process group of ``name`` (a Celery worker's pool children too)."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
