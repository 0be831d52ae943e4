"""``promoflow serve --workers N``: the web app in N gunicorn processes (issue 17).

What must be shared between the processes, and where it lives:

* definitions: every process's registry compares the published
  fingerprint in the database before use (:mod:`engine.registry`);
* sign-in throttles, sessions and API tokens (revocation included): rows in
  the database, read on each request (:mod:`engine.login_throttle`,
  :mod:`engine.accounts`); session cookies are signed with the instance
  secret, which every process reads from the same instance folder;
* the SQLite write gate: slot files with ``flock`` in the instance folder
  (:mod:`web.write_gate`);
* metrics: prometheus_client's multiprocess mode, a folder every process
  writes to (``PROMETHEUS_MULTIPROC_DIR``, default ``<instance>/metrics``,
  emptied at start); a dead worker's gauges are marked dead.

The database is migrated once in the master before the workers fork (each
worker builds its own app and connections after the fork, so no connection
crosses a fork).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from engine.settings import Settings


def metrics_dir(settings: Settings) -> Path:
    """The multiprocess metrics folder: ``PROMETHEUS_MULTIPROC_DIR``, or one
    in the instance folder (then set in the environment for the workers)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(configured) if configured else Path(settings.instance_path) / "metrics"


def build_app(settings: Settings, write_concurrency: int | None) -> Any:
    """One worker's WSGI app: the Flask app behind the shared write gate."""
    from web import create_app
    from web.write_gate import default_limit, gate

    app = create_app({"MIGRATE": False}, settings=settings)
    limit = default_limit(settings.database_url) if write_concurrency is None else write_concurrency
    app.wsgi_app = gate(app.wsgi_app, limit, lock_dir=Path(settings.instance_path) / "locks")  # type: ignore[method-assign,assignment]
    return app


def serve_gunicorn(settings: Settings, *, host: str, port: int, workers: int, threads: int,
                   write_concurrency: int | None = None, timeout: int = 60) -> None:
    """Run gunicorn (gthread workers) in the foreground until stopped."""
    from gunicorn.app.base import BaseApplication

    from engine.storage.database import make_engine
    from engine.storage.migrate import upgrade
    from web.logs import setup_logging

    folder = metrics_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)  # counters of an earlier run must not add up
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    setup_logging(settings.log_format, settings.log_level)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()

    def child_exit(_server: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def post_fork(_server: Any, _worker: Any) -> None:
        setup_logging(settings.log_format, settings.log_level)

    options = {
        "bind": f"{host}:{port}", "workers": workers, "threads": max(1, threads), "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": timeout, "graceful_timeout": 20, "child_exit": child_exit, "post_fork": post_fork,
        "accesslog": None, "proc_name": "promoflow-web",
    }

    class PromoflowApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return build_app(settings, write_concurrency)

    print(f"Serving on http://{host}:{port}/ with {workers} gunicorn workers (Ctrl+C to stop)", flush=True)
    PromoflowApplication().run()


__all__ = ["build_app", "metrics_dir", "serve_gunicorn"]
