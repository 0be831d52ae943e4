"""A tiny threaded HTTP "provider" that counts deliveries per idempotency key,
and a connector speaking its batch API. Used by the SIGKILL test (the worker
runs in a subprocess, the provider in the test process)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import requests

from engine.ports import Capabilities, Connector, OutgoingMessage, SendResult


class CountingProvider:
    """POST /send {"messages": [{"id", "key", "to"}]} → {"results": [{"id", "ok"}]};
    recipients ending in ``99`` are refused permanently (not counted)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delay = delay
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                results = []
                with provider.lock:
                    for m in body["messages"]:
                        ok = not m["to"].endswith("99")
                        if ok:
                            provider.counts[m["key"]] += 1
                        results.append({"id": m["id"], "ok": ok})
                if provider.delay:
                    time.sleep(provider.delay)
                data = json.dumps({"results": results}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> CountingProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/send"

    def total(self) -> int:
        with self.lock:
            return sum(self.counts.values())


class CountingConnector(Connector):
    """Speaks :class:`CountingProvider`'s batch API."""

    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=100)

    def __init__(self, url: str, connector_id: str = "http") -> None:
        self.url = url
        self.id = connector_id
        self.http = requests.Session()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        payload = {"messages": [{"id": m.id, "key": m.idempotency_key, "to": m.recipient} for m in messages]}
        try:
            answer = self.http.post(self.url, json=payload, timeout=(2, 10)).json()
        except requests.ConnectionError:
            return [SendResult.retryable(m.id, "connection") for m in messages]
        except (requests.Timeout, ValueError):
            return [SendResult.unknown(m.id, "timeout") for m in messages]
        by_id = {r["id"]: r for r in answer["results"]}
        return [SendResult.accepted(m.id, f"p-{m.id}") if by_id[m.id]["ok"]
                else SendResult.permanent(m.id, "refused") for m in messages]
