"""The SQLite write gate across processes (``serve --workers N``): two real
processes, each with threads posting through its own ``WriteGate`` on the
same lock folder, never have more than ``limit`` writing requests inside the
app at once; reads pass. Each request notes its start and end in a shared
file; the test checks the intervals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, threading, time, os
from web.write_gate import WriteGate
log, lock_dir, limit, method = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def app(environ, start_response):
    start = time.monotonic()
    time.sleep(0.03)
    with open(log, "a") as f:
        f.write(f"{environ['REQUEST_METHOD']} {start:.6f} {time.monotonic():.6f}\n")
    start_response("200 OK", [])
    return [b""]

gated = WriteGate(app, limit, lock_dir=lock_dir)
def client():
    for _ in range(8):
        list(gated({"REQUEST_METHOD": method, "PATH_INFO": "/x"}, lambda *a: None))
threads = [threading.Thread(target=client) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
"""


def _most_inside(lines: list[str], method: str) -> int:
    events = []
    for line in lines:
        m, start, end = line.split()
        if m == method:
            events += [(float(start), 1), (float(end), -1)]
    inside = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        inside += step
        most = max(most, inside)
    return most


@pytest.mark.parametrize("limit", [1, 2])
def test_gate_holds_across_processes(tmp_path: Path, limit: int) -> None:
    log = tmp_path / "intervals.txt"
    locks = tmp_path / "locks"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(log), str(locks), str(limit), method], env=env)
             for method in ("POST", "POST", "GET")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 3 * 24
    assert _most_inside(lines, "POST") == limit  # 6 writer threads in 2 processes, `limit` inside at once
    assert _most_inside(lines, "GET") > 1  # reads are never gated
