"""A worker process for the crash tests: one scheduler tick at the bench's
``NOW`` over the database at argv[1] (the win-back rule's run and its
journeys), in small batches so a kill lands between commits. Not a test."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.automation import Policy, tick  # noqa: E402
from engine.storage.database import make_engine, make_session_factory  # noqa: E402


def bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_rules", ROOT / "bench" / "rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_rules"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    rules = bench()
    with tempfile.TemporaryDirectory() as tmp:
        defs = rules.definitions(Path(tmp))  # type: ignore[attr-defined]
    engine = make_engine(sys.argv[1])
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    # Entry chunks of 20,000 customers: the run commits several times, so a kill lands between commits.
    report = tick(make_session_factory(engine), now=rules.NOW, definitions=defs, batch=batch,  # type: ignore[attr-defined]
                  deliver=False,
                  policy=Policy(entry_chunk=20_000, entry_chunk_postgresql=20_000))
    print(report.runs, {k: v.sent for k, v in report.advanced.items()}, flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
