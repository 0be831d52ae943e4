"""Approval instances per second: submit → manager approves → finance approves.

The project: through the service layer on a SQLite file (WAL) — the
RecordService creates the record and starts the shipped ``activity_approval``
in the same transaction, the manager and then the (single) finance approver
act on the task from their inbox query via ``WorkflowService.act``; each step
commits its state, task rows, events, audit entries and outbox rows.

The baseline, measured in the same run: SpiffWorkflow 3 running the same flow
as BPMN (``bench/approvals.bpmn``: user task, exclusive gateway on the budget,
user task, script task), the way a host application persists it: one
transaction per step that reads the serialized workflow from a SQLite table,
deserializes it, completes the task, runs the engine steps, serializes it and
writes it back (the submit inserts the record and the first state).
SpiffWorkflow is not a project dependency: it is installed with pip into
``bench/.venv-spiff`` (git-ignored) when missing, and runs in a subprocess.

Rounds alternate (project, baseline, …) and the medians are compared. An
informational line gives the floor: the project's own rows for one instance
written by hand-written SQL in the same transactions, with no engine.

    python bench/approvals.py [--scale S]

Last line: ratio=R project=P baseline=B unit=instances/s
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPIFF_VENV = HERE / ".venv-spiff"
SPIFF_PY = SPIFF_VENV / "bin" / "python"
BPMN = HERE / "approvals.bpmn"
NOW = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def payload() -> dict:
    return {
        "name": "双十一会员专享", "channel": "wecom", "budget": "60000.00", "start_date": "2026-03-09",
        "end_date": "2026-03-19", "discount_type": "coupon", "coupon_value": "20.00",
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "15.50"}], "target_store": "sh_xujiahui",
        "expected_revenue": "250000.00", "description": "<b>会员</b>专享：满 200 减 20",
    }


# ------------------------------------------------------------------ project

class Project:
    """A migrated SQLite file with the shipped definitions and four people."""

    def __init__(self, folder: Path):
        sys.path.insert(0, str(ROOT))
        from engine.definitions.loader import load_paths
        from engine.publishing import publish_set
        from engine.records import RecordService
        from engine.registry import DefinitionRegistry
        from engine.storage.database import (
            make_engine,
            make_session_factory,
            transaction,
        )
        from engine.storage.migrate import upgrade
        from engine.storage.models import User, UserRole
        from engine.workflows import WorkflowService

        engine = make_engine(f"sqlite:///{folder / 'project.sqlite'}")
        upgrade(engine)
        self.sf = make_session_factory(engine)
        shipped = load_paths([ROOT / "forms", ROOT / "workflows", ROOT / "config"], relative_to=ROOT)
        publish_set(self.sf, shipped.raise_for_errors(), now=NOW, by="bench")
        with transaction(self.sf) as s:
            for name, role in (("staff", "staff"), ("mm", "marketing_manager"), ("fin", "finance"),
                               ("s1", "store_manager")):
                user = User(username=name, email=f"{name}@example.com", created_at=NOW.replace(tzinfo=None))
                s.add(user)
                s.flush()
                s.add(UserRole(user_id=user.id, role=role))
        registry = DefinitionRegistry(self.sf)
        self.workflows = WorkflowService(self.sf, registry)
        self.records = RecordService(self.sf, registry, on_created=[self.workflows.start_in])
        self.done = 0

    def run(self, n: int) -> float:
        """Create and complete ``n`` instances; instances per second."""
        wf, records = self.workflows, self.records
        data = payload()
        started = time.perf_counter()
        for _ in range(n):
            now = NOW + timedelta(seconds=self.done)
            rec = records.create("activity_request", data, actor="staff", now=now)
            [task] = wf.tasks_for("mm")
            wf.act(task.id, actor="mm", action="approve", comment="同意", now=now)
            [task] = wf.tasks_for("fin")
            view = wf.act(task.id, actor="fin", action="approve", now=now)
            assert view.status == "approved" and view.record_id == rec.id
            self.done += 1
        return n / (time.perf_counter() - started)

    def run_bulk(self, n: int) -> float:
        """Informational, not the ratio: ``n`` submissions (one transaction
        each), then the manager and the finance approver each approve all of
        them with bulk requests (批量审批, up to 200 tasks per transaction)."""
        wf, records = self.workflows, self.records
        data = payload()
        started = time.perf_counter()
        ids = []
        for _ in range(n):
            now = NOW + timedelta(seconds=self.done)
            ids.append(records.create("activity_request", data, actor="staff", now=now).id)
            self.done += 1
        for user in ("mm", "fin"):
            tasks = [t.id for t in wf.tasks_for(user)]
            for start in range(0, len(tasks), wf.BULK_LIMIT):
                results = wf.act_many(tasks[start:start + wf.BULK_LIMIT], actor=user, now=now)
                assert all(r.ok for r in results)
        assert all(records.get(i).status == "approved" for i in ids[:3] + ids[-3:])
        return n / (time.perf_counter() - started)


# ------------------------------------------------------------------ the floor

class SqlFloor:
    """Informational, not the ratio: the rows the project writes for one
    instance, written by hand-written SQL in the same three transactions with
    the same schema and indexes (the inbox queries and the act's read
    included), with no engine at all: values are the project's own last
    instance's rows, copied, so sizes match. It bounds what any engine that
    keeps the issue's guarantees (events, audit and outbox rows in the
    transition's transaction, compare-and-set) can reach on this disk."""

    def __init__(self, folder: Path, project_db: Path):
        from engine.storage.database import make_engine
        from engine.storage.migrate import upgrade

        path = folder / "floor.sqlite"
        upgrade(make_engine(f"sqlite:///{path}"))
        src = sqlite3.connect(project_db)
        rec_id, self.data = src.execute("SELECT id, data FROM records ORDER BY id DESC LIMIT 1").fetchone()
        inst_id, self.state = src.execute("SELECT id, state FROM workflow_instances WHERE record_id = ?",
                                          (rec_id,)).fetchone()
        self.outbox = src.execute("SELECT channel, connector, recipient, subject, body, payload, template_id "
                                  "FROM outbox WHERE idempotency_key LIKE ? ORDER BY id",
                                  (f"wf:{inst_id}:%",)).fetchall()
        self.events = src.execute("SELECT name, subject_type, payload FROM events WHERE subject_id = ? "
                                  "ORDER BY id", (str(rec_id),)).fetchall()
        self.audit = src.execute("SELECT actor, action, entity_type, diff FROM audit_log WHERE entity_id = ? "
                                 "ORDER BY id", (str(rec_id),)).fetchall()
        src.close()
        assert (len(self.outbox), len(self.events), len(self.audit)) == (3, 5, 5), "the project wrote another shape"
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            self.db.execute(f"PRAGMA {pragma}")
        for name in ("staff", "mm", "fin", "s1"):
            self.db.execute("INSERT INTO users (username, email, created_at) VALUES (?, ?, ?)",
                            (name, f"{name}@example.com", "2026-03-01 02:00:00"))
        self.done = 0

    def run(self, n: int) -> float:
        db, data, state, at = self.db, self.data, self.state, "2026-03-01 02:00:05.000000"
        ob, ev, au = self.outbox, self.events, self.audit
        task_sql = ("INSERT INTO tasks (instance_id, step_id, assignee_id, role, status, due_at, version, created_at, "
                    "seq, assignee_name, kind, wake_at) VALUES (?, ?, (SELECT id FROM users WHERE username = ?), "
                    "NULL, 'open', ?, 1, ?, ?, ?, 'approval', ?) RETURNING id")
        outbox_sql = ("INSERT INTO outbox (channel, connector, recipient, subject, body, payload, idempotency_key, "
                      "delivery_class, status, attempts, next_attempt_at, created_at, template_id, reconcile_checks) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, 'transactional', 'queued', 0, ?, ?, ?, 0) "
                      "ON CONFLICT DO NOTHING RETURNING id")
        event_sql = "INSERT INTO events (name, subject_type, subject_id, payload, created_at) VALUES (?, ?, ?, ?, ?)"
        audit_sql = ("INSERT INTO audit_log (at, actor, action, entity_type, entity_id, diff) "
                     "VALUES (?, ?, ?, ?, ?, ?)")
        inbox_sql = ("SELECT tasks.id FROM tasks JOIN workflow_instances ON workflow_instances.id = tasks.instance_id "
                     "JOIN records ON records.id = workflow_instances.record_id WHERE tasks.assignee_name = ? "
                     "AND tasks.status = 'open' ORDER BY CASE WHEN tasks.due_at IS NULL THEN 1 ELSE 0 END, "
                     "tasks.due_at, tasks.id LIMIT 500")
        read_sql = ("SELECT tasks.id, tasks.version, workflow_instances.state, workflow_instances.version, records.data, "
                    "records.version FROM tasks JOIN workflow_instances ON workflow_instances.id = tasks.instance_id "
                    "JOIN records ON records.id = workflow_instances.record_id WHERE tasks.instance_id = "
                    "(SELECT instance_id FROM tasks WHERE id = ?) ORDER BY tasks.seq")

        def act(user: str, seq: int, inst: str, k: int) -> None:
            [task_id] = db.execute(inbox_sql, (user,)).fetchone()
            db.execute("BEGIN")
            db.execute(read_sql, (task_id,)).fetchall()
            db.execute("UPDATE workflow_instances SET state = ?, status = ?, version = version + 1 "
                       "WHERE id = ? AND version = ?", (state, "running", inst, seq))
            db.execute("UPDATE tasks SET status = 'done', acted_at = ?, action = 'approve', comment = ?, "
                       "version = version + 1, wake_at = NULL WHERE instance_id = ? AND seq = ? AND version = 1 "
                       "AND status = 'open'", (at, "同意", inst, seq))
            if seq == 1:
                db.execute(task_sql, (inst, "finance_review", "fin", at, at, 2, "fin", at)).fetchone()
            else:
                db.execute("UPDATE records SET data = ?, updated_at = ?, version = 2, status = 'approved' "
                           "WHERE id = ? AND version = 1", (data, at, inst))
            db.execute(outbox_sql, (*ob[seq][:6], f"floor:{k}:{seq}", at, at, ob[seq][6])).fetchone()
            db.executemany(event_sql, [(e[0], e[1], inst, e[2], at) for e in (ev[2:3] if seq == 1 else ev[3:5])])
            db.executemany(audit_sql, [(a[0], a[1], a[2], inst, a[3], at) for a in
                                       (au[2:3] if seq == 1 else au[3:5])])
            db.execute("COMMIT")

        started = time.perf_counter()
        for _ in range(n):
            k = self.done = self.done + 1
            db.execute("BEGIN")
            [rec] = db.execute("INSERT INTO records (form_id, form_version, data, created_by, created_at, updated_at, "
                               "version, status, created_by_name) VALUES ('activity_request', 1, ?, "
                               "(SELECT id FROM users WHERE username = 'staff'), ?, ?, 1, 'submitted', 'staff') "
                               "RETURNING id", (data, at, at)).fetchone()
            inst = str(db.execute("INSERT INTO workflow_instances (workflow_id, workflow_version, record_id, state, "
                                  "status, version, started_at) VALUES ('activity_approval', 1, ?, ?, 'running', 1, ?) "
                                  "RETURNING id", (rec, state, at)).fetchone()[0])
            db.execute(task_sql, (inst, "manager_review", "mm", at, at, 1, "mm", at)).fetchone()
            db.execute("UPDATE records SET status = 'in_review' WHERE id = ?", (rec,))
            db.execute(outbox_sql, (*ob[0][:6], f"floor:{k}:0", at, at, ob[0][6])).fetchone()
            db.executemany(event_sql, [(e[0], e[1], inst, e[2], at) for e in ev[:2]])
            db.executemany(audit_sql, [(a[0], a[1], a[2], inst, a[3], at) for a in au[:2]])
            db.execute("COMMIT")
            act("mm", 1, inst, k)
            act("fin", 2, inst, k)
        return n / (time.perf_counter() - started)


# ------------------------------------------------------------------ SpiffWorkflow

def spiff_worker(folder: Path, rounds: list[int]) -> None:
    """Runs inside bench/.venv-spiff: prints one rate per round, one per line."""
    from SpiffWorkflow.bpmn.parser import BpmnParser
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.util.task import TaskState

    parser = BpmnParser()
    parser.add_bpmn_file(str(BPMN))
    spec = parser.get_spec("activity_approval")
    serializer = BpmnWorkflowSerializer()
    db = sqlite3.connect(folder / "spiff.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, data TEXT, status TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS instances (id INTEGER PRIMARY KEY, record_id INTEGER, "
               "state TEXT, status TEXT, version INTEGER)")
    data = payload()

    def step(instance_id: int, task_name: str) -> None:
        db.execute("BEGIN IMMEDIATE")
        state, version = db.execute("SELECT state, version FROM instances WHERE id = ?", (instance_id,)).fetchone()
        wf = serializer.deserialize_json(state)
        [task] = [t for t in wf.get_tasks(state=TaskState.READY, manual=True) if t.task_spec.name == task_name]
        task.data["comment"] = "同意"
        task.run()
        wf.do_engine_steps()
        status = "approved" if wf.is_completed() else "running"
        db.execute("UPDATE instances SET state = ?, status = ?, version = ? WHERE id = ? AND version = ?",
                   (serializer.serialize_json(wf), status, version + 1, instance_id, version))
        if status == "approved":
            db.execute("UPDATE records SET status = ? WHERE id = (SELECT record_id FROM instances WHERE id = ?)",
                       (wf.last_task.data.get("status", status), instance_id))
        db.execute("COMMIT")

    for n in rounds:
        started = time.perf_counter()
        for _ in range(n):
            db.execute("BEGIN IMMEDIATE")
            record_id = db.execute("INSERT INTO records (data, status) VALUES (?, 'submitted')",
                                   (json.dumps(data, ensure_ascii=False),)).lastrowid
            wf = BpmnWorkflow(spec)
            wf.task_tree.data.update({"budget": float(data["budget"]), "submitter": "staff"})
            wf.do_engine_steps()
            instance_id = db.execute("INSERT INTO instances (record_id, state, status, version) "
                                     "VALUES (?, ?, 'running', 1)",
                                     (record_id, serializer.serialize_json(wf))).lastrowid
            db.execute("COMMIT")
            step(instance_id, "manager_review")
            step(instance_id, "finance_review")
        rate = n / (time.perf_counter() - started)
        done = db.execute("SELECT count(*) FROM records WHERE status = 'approved'").fetchone()[0]
        assert done >= n, done
        print(f"{rate:.3f}", flush=True)


def ensure_spiff() -> None:
    if SPIFF_PY.exists() and subprocess.run([str(SPIFF_PY), "-c", "import SpiffWorkflow"],
                                            capture_output=True, check=False).returncode == 0:
        return
    print("installing SpiffWorkflow into bench/.venv-spiff …", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(SPIFF_VENV)], check=True)
    (SPIFF_VENV / ".gitignore").write_text("*\n", encoding="utf-8")
    subprocess.run([str(SPIFF_PY), "-m", "pip", "install", "-q", "SpiffWorkflow>=3,<4"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default work (0 < S <= 1)")
    parser.add_argument("--spiff-worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spiff_worker:
        folder, *counts = args.spiff_worker
        rounds = [int(c) for c in counts]
        for n in rounds:  # one round per line read from stdin
            if sys.stdin.readline() == "":
                return
            spiff_worker(Path(folder), [n])
        return
    scale = min(1.0, max(0.01, args.scale))
    n = max(5, int(300 * scale))
    rounds = 3
    ensure_spiff()
    with tempfile.TemporaryDirectory(prefix="pf-bench-approvals-") as tmp:
        folder = Path(tmp)
        project = Project(folder)
        project.run(max(2, n // 10))  # warm-up: caches, first compiles
        worker = subprocess.Popen([str(SPIFF_PY), __file__, "--spiff-worker", str(folder),
                                   *([str(max(2, n // 10))] + [str(n)] * rounds)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert worker.stdin is not None and worker.stdout is not None

        def spiff_round() -> float:
            worker.stdin.write("go\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
            line = worker.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise SystemExit(f"SpiffWorkflow worker failed (exit {worker.wait()})")
            return float(line)

        spiff_round()  # warm-up
        ours: list[float] = []
        theirs: list[float] = []
        for i in range(rounds):
            ours.append(project.run(n))
            theirs.append(spiff_round())
            print(f"round {i + 1}: project {ours[-1]:.1f}/s, SpiffWorkflow {theirs[-1]:.1f}/s", file=sys.stderr)
        worker.stdin.close()
        worker.wait()
        bulk = statistics.median(project.run_bulk(n) for _ in range(rounds))
        sql_floor = SqlFloor(folder, folder / "project.sqlite")
        sql_floor.run(max(2, n // 10))
        floor = statistics.median(sql_floor.run(n) for _ in range(rounds))
    p, b = statistics.median(ours), statistics.median(theirs)
    print(f"instances per round: {n}; project: record + workflow start, two approvals via WorkflowService "
          f"(SQLite); baseline: SpiffWorkflow BPMN, state serialized to SQLite after each step")
    print(f"informational, not the ratio: bulk approval (each submission its own transaction, then each approver "
          f"approves all open tasks per request via WorkflowService.act_many): {bulk:.1f} instances/s")
    print(f"informational, not the ratio: the same rows by hand-written SQL in the same three transactions, "
          f"no engine (the floor for any engine with these guarantees on this disk): {floor:.1f} instances/s "
          f"= {floor / b:.2f}x SpiffWorkflow")
    print(f"ratio={p / b:.2f} project={p:.1f} baseline={b:.1f} unit=instances/s")


if __name__ == "__main__":
    main()
