"""The write gate of ``promoflow serve``: writing requests one at a time on
SQLite, reads never held up, and nothing changes for PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from web.write_gate import WriteGate, default_limit, gate


class _Probe:
    """A WSGI app that notes how many requests are inside it at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.05)
        with self._lock:
            self.inside -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["REQUEST_METHOD"].encode()]


def _hammer(app, method: str, n: int = 6) -> list[bytes]:
    out: list[bytes] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        barrier.wait()
        out.append(b"".join(app({"REQUEST_METHOD": method}, lambda *a: None)))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "post"])
def test_writing_requests_enter_one_at_a_time(method):
    probe = _Probe()
    answers = _hammer(WriteGate(probe, 1), method)
    assert answers == [method.encode()] * 6
    assert probe.most == 1


def test_a_limit_of_two_lets_two_in():
    probe = _Probe()
    _hammer(WriteGate(probe, 2), "POST")
    assert probe.most == 2


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_never_held_up(method):
    probe = _Probe()
    _hammer(WriteGate(probe, 1), method)
    assert probe.most > 1


def test_a_failing_request_gives_its_place_back():
    def boom(environ, start_response):
        raise RuntimeError("view failed")

    app = WriteGate(boom, 1)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            app({"REQUEST_METHOD": "POST"}, lambda *a: None)
    assert app._slots.acquire(blocking=False)  # noqa: SLF001 - the place is free again


def test_defaults_per_database():
    assert default_limit("sqlite:////srv/promoflow/promoflow.sqlite") == 1
    assert default_limit("postgresql+psycopg://u@db/promoflow") == 0
    probe = _Probe()
    assert gate(probe, 0) is probe
    assert isinstance(gate(probe, 1), WriteGate)
    with pytest.raises(ValueError):
        WriteGate(probe, 0)


def test_serve_offers_the_option(tmp_path):
    from click.testing import CliRunner

    from web.cli import main

    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    assert "--write-concurrency" in result.output and "PROMOFLOW_WRITE_CONCURRENCY" in result.output
    bad = CliRunner().invoke(main, ["serve", "--write-concurrency", "-1"])
    assert bad.exit_code != 0 and "-1" in bad.output


@pytest.mark.parametrize(("given", "expected"), [(None, 1), (0, 0), (3, 3)])
def test_serve_puts_the_gate_in_front_of_the_app(tmp_path, monkeypatch, given, expected):
    import waitress

    from engine.settings import load_settings
    from web.cli_serve import _serve

    seen = {}
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: seen.update(app=app, **kw))
    settings = load_settings({}, overrides={"instance_path": str(tmp_path / "instance"),
                                            "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    _serve(settings, "127.0.0.1", 0, 4, write_concurrency=given)
    wsgi = seen["app"].wsgi_app
    if expected:
        assert isinstance(wsgi, WriteGate) and wsgi.limit == expected
    else:
        assert not isinstance(wsgi, WriteGate)
    assert seen["threads"] == 4


def test_sign_in_posts_never_wait_for_the_gate():
    """A login flood spends its time in argon2; it must not hold up (or be held
    up by) the form submissions queued at the gate."""
    probe = _Probe()
    held = WriteGate(probe, 1)
    with held._slots:  # a slow submission is inside
        for path in ("/login", "/account/password"):
            answer = b"".join(held({"REQUEST_METHOD": "POST", "PATH_INFO": path}, lambda *a: None))
            assert answer == b"POST"
        waiting = threading.Thread(target=lambda: b"".join(
            held({"REQUEST_METHOD": "POST", "PATH_INFO": "/forms/x/new"}, lambda *a: None)))
        waiting.start()
        waiting.join(timeout=0.3)
        assert waiting.is_alive()  # any other post still waits for the slot
    waiting.join(timeout=5)
    assert not waiting.is_alive()
