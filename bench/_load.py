"""A small closed-loop HTTP load generator for the benchmarks (loopback only).

Several threads, each with one keep-alive connection, POST the same request
for a fixed time. Both the project and its baseline are driven by this same
generator in the same run, so the ratio does not depend on its own speed.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def post_load(port: int, path: str, body: dict | None, headers: dict[str, str], *, seconds: float,
              threads: int = 8, expect: int = 201, next_body: Any = None) -> LoadResult:
    """POST ``body`` to ``path`` from ``threads`` connections for ``seconds``;
    with ``next_body`` (thread-safe, returns the next JSON payload as bytes or
    None when there is nothing left) each request sends its own body instead."""
    payload = json.dumps(body).encode() if body is not None else b""
    base_headers = {"Content-Type": "application/json", **headers}
    counts = [0] * threads
    errors = [0] * threads
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local: dict[int, int] = {}
        while time.monotonic() < stop:
            sent = payload if next_body is None else next_body()
            if sent is None:
                break
            try:
                conn.request("POST", path, body=sent, headers=base_headers)
                resp = conn.getresponse()
                resp.read()
                local[resp.status] = local.get(resp.status, 0) + 1
                if resp.status == expect:
                    counts[i] += 1
                else:
                    errors[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()
        with lock:
            for k, v in local.items():
                statuses[k] = statuses.get(k, 0) + v

    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return LoadResult(sum(counts), sum(errors), time.monotonic() - started, statuses)
