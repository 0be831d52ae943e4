"""A local fake of a generic JSON survey API: ``GET /responses?since=<cursor>``
answers ``{"items": [...], "next": "<cursor>"}`` in pages, checks the bearer
token, and fails on demand (HTTP 500, a body that is not JSON)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeSurveyApi:
    def __init__(self, items: list[dict[str, Any]], *, page_size: int = 2, token: str | None = None) -> None:
        self.items = items
        self.page_size = page_size
        self.token = token
        self.requests: list[str | None] = []   # the ``since`` of each request
        self.fail_next: list[str] = []          # "500" | "garbage"
        self.fail_after: int | None = None      # fail ("500") every request after this many
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/responses"

    def start(self) -> FakeSurveyApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                if url.path != "/responses":
                    return self._send(404, b"{}")
                if fake.token and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    return self._send(401, b'{"error": "unauthorized"}')
                since = parse_qs(url.query).get("since", [None])[0]
                fake.requests.append(since)
                if fake.fail_after is not None and len(fake.requests) > fake.fail_after:
                    return self._send(500, b"{}")
                if fake.fail_next:
                    kind = fake.fail_next.pop(0)
                    return self._send(500, b"{}") if kind == "500" else self._send(200, b"<html>oops")
                start = int(since) if since else 0
                page = fake.items[start:start + fake.page_size]
                nxt = str(start + len(page)) if page else since
                return self._send(200, json.dumps({"items": page, "next": nxt}, ensure_ascii=False).encode())

        return Handler
