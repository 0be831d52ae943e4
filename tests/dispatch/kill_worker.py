"""Dispatcher worker for the SIGKILL test: dispatch everything due at argv[3]
in the database argv[1] to the counting provider at argv[2]. Not a test."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from fake_http import CountingConnector

from engine.dispatch import Dispatcher
from engine.storage.database import make_engine, make_session_factory


def main() -> None:
    engine = make_engine(sys.argv[1])
    now = datetime.fromisoformat(sys.argv[3])
    dispatcher = Dispatcher(make_session_factory(engine), {"http": CountingConnector(sys.argv[2])},
                            worker_id="doomed")
    print("ready", flush=True)
    report = dispatcher.run_until_idle(now, batch=200)
    print(report, flush=True)


if __name__ == "__main__":
    main()
