"""/metrics in prometheus_client's multiprocess mode (gunicorn): two app
processes' request histograms are summed by the scrape (issue 17). SQLite
only: the mode concerns files on disk, not the database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from engine.settings import Settings
from web import create_app
settings = Settings(instance_path=__import__('pathlib').Path(sys.argv[1]), database_url=sys.argv[2], secret_key="x")
app = create_app({"TESTING": True}, settings=settings)
client = app.test_client()
for _ in range(int(sys.argv[3])):
    assert client.get("/healthz").status_code == 200
if sys.argv[4] == "scrape":
    sys.stdout.write(client.get("/metrics").text)
"""


def test_multiprocess_mode_sums_processes(tmp_path: Path) -> None:
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin", "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    def run(count: int, mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "i"), url, str(count), mode],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run(3, "no")
    text = run(2, "scrape")
    counts = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "promoflow_http_request_duration_seconds_count" and s.labels.get("endpoint") == "health.healthz"]
    assert sum(counts) == 5  # 3 from the first process, 2 from the second
    assert "promoflow_queue_depth" in text or "promoflow_outbox_messages" in text
