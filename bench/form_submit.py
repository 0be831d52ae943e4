"""Form submissions per second through the real HTTP stack.

The project: `promoflow serve` (waitress) on a SQLite file, POST
/api/v1/forms/activity_request/records with a bearer token: validation,
record, audit entry, event, permission check. The baseline, measured in the
same run with the same load generator and server: a bare Flask endpoint that
parses the same JSON and inserts one row with SQLAlchemy.

    python bench/form_submit.py [--scale S]

Last line: ratio=R project=P baseline=B unit=req/s
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import free_port, post_load, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROMOFLOW = [sys.executable, "-m", "web.cli"]


def payload() -> dict:
    start = date.today() + timedelta(days=7)
    return {
        "name": "双十一会员专享", "channel": "wecom", "budget": "60000.00",
        "start_date": start.isoformat(), "end_date": (start + timedelta(days=10)).isoformat(),
        "discount_type": "coupon", "coupon_value": "20.00",
        "materials": [{"item": "海报", "qty": 10, "unit_cost": "15.50"}],
        "target_store": "sh_xujiahui", "expected_revenue": "250000.00",
        "description": "<b>会员</b>专享：满 200 减 20",
    }


def run(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def start(cmd: list[str], env: dict, port: int) -> subprocess.Popen:
    log = open(os.environ.get("BENCH_LOG_DIR", "/tmp") + f"/pf-bench-server-{port}.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default duration (0 < S <= 1)")
    parser.add_argument("--threads", type=int, default=8, help="client connections")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; medians are compared")
    parser.add_argument("--server-threads", type=int, default=4, help="waitress threads, the same for both servers")
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    seconds = max(2.0 * args.rounds, 30.0 * args.scale)

    with tempfile.TemporaryDirectory(prefix="pf-bench-") as tmp:
        env = dict(os.environ, PROMOFLOW_INSTANCE_PATH=f"{tmp}/instance",
                   PROMOFLOW_DATABASE_URL=f"sqlite:///{tmp}/project.sqlite")
        run(PROMOFLOW + ["publish"], env)
        run(PROMOFLOW + ["users", "add", "bench", "--role", "staff", "--password", "submit-password-1"], env)
        out = run(PROMOFLOW + ["tokens", "create", "bench"], env)
        token = max(re.findall(r"[A-Za-z0-9_\-\.]{24,}", out), key=len)

        body = payload()
        env["BENCH_THREADS"] = str(args.server_threads)
        port, base_port = free_port(), free_port()
        server = start(PROMOFLOW + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                    "--threads", str(args.server_threads)], env, port)
        baseline_server = start([sys.executable, str(Path(__file__).with_name("baseline_flask_app.py")),
                                 f"sqlite:///{tmp}/baseline.sqlite", str(base_port)], env, base_port)
        target = {
            "project": (port, "/api/v1/forms/activity_request/records", {"Authorization": f"Bearer {token}"}),
            "baseline": (base_port, "/records", {}),
        }
        runs: dict[str, list] = {"project": [], "baseline": []}
        try:
            for p, path, headers in target.values():  # warm-up
                post_load(p, path, body, headers, seconds=1.0, threads=2)
            # Alternate short rounds and keep each side's median: a stall of
            # the machine (or a WAL checkpoint) then hits one round, not a side.
            for _ in range(args.rounds):
                for name, (p, path, headers) in target.items():
                    runs[name].append(post_load(p, path, body, headers, seconds=seconds / args.rounds,
                                                threads=args.threads))
        finally:
            for proc in (server, baseline_server):
                proc.terminate()
                proc.wait(10)
    project = sorted(runs["project"], key=lambda r: r.rate)[len(runs["project"]) // 2]
    baseline = sorted(runs["baseline"], key=lambda r: r.rate)[len(runs["baseline"]) // 2]
    for name in runs:
        print(f"{name:<9} rounds: " + ", ".join(f"{r.rate:.1f}" for r in runs[name]) + " req/s")
    for name, result in (("project", project), ("baseline", baseline)):
        print(f"{name:<9} median {result.rate:9.1f} req/s  ({result.requests} ok, {result.errors} errors, "
              f"statuses {result.statuses}, {result.seconds:.1f} s)")
    if project.errors or baseline.errors:
        print("warning: some requests failed; the rates count successful ones only", file=sys.stderr)
    ratio = project.rate / baseline.rate if baseline.rate else 0.0
    print(f"ratio={ratio:.3f} project={project.rate:.1f} baseline={baseline.rate:.1f} unit=req/s")


if __name__ == "__main__":
    main()
