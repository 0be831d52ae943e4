"""A threaded HTTP server on 127.0.0.1 for fake providers, with fault injection.

Faults (queued with :meth:`FakeProvider.inject`, one per request):
``timeout`` (handle the request, then answer after ``delay`` seconds — the
client's read timeout fires: "sent but no answer"), ``reset`` (handle it, then
reset the connection without an answer), ``reset_before`` (reset without
handling), ``500``/``502``/``503``/``429`` (answer that status, request not
handled), ``malformed`` (handle it, answer 200 with a body that is not JSON).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    """The provider's own access log is not ours to check (and holds the test secrets)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass


class FakeProvider:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.handled: list[Any] = []
        self.faults: deque[str] = deque()
        self.delay = 1.0
        self.now: Callable[[], float] = time.time
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeProvider:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, *faults: str) -> None:
        with self.lock:
            self.faults.extend(faults)

    # ------------------------------------------------------------ WSGI
    def handle(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        request.get_data(cache=True)
        with self.lock:
            self.requests.append(request)
            fault = self.faults.popleft() if self.faults else None
        if fault in ("500", "502", "503", "429"):
            response = Response("<html>error</html>", status=int(fault), content_type="text/html")
            return response(environ, start_response)
        if fault == "reset_before":
            return self._reset(environ, start_response)
        response = self.handle(request)
        if fault == "timeout":
            time.sleep(self.delay)
        elif fault == "reset":
            return self._reset(environ, start_response)
        elif fault == "malformed":
            response = Response("<html>upstream garbage", status=200, content_type="application/json")
        return response(environ, start_response)

    @staticmethod
    def _reset(environ: dict[str, Any], start_response: Any) -> Any:
        sock: socket.socket = environ["werkzeug.socket"]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        start_response("500 reset", [])
        return [b""]


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, ensure_ascii=False), status=status, content_type="application/json")
