"""``promoflow serve --workers 2``: two real gunicorn processes share what
must be shared (issue 17): both answer, a revoked token stops working in
both within the cache bound, a newly published form is served by both, a
sign-in lock counts failures from both, SQLite writes through both pass the
shared write gate without an error, and one ``/metrics`` scrape sums both
processes."""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .support import Fleet, base_env, cli, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PROBE_FORM = """\
kind: form
id: fleet_probe
title: 多进程探针
title_en: Multi-process probe
fields:
  - {key: note, label: 备注, label_en: Note, type: text, required: true, max_length: 60}
submit_roles: [marketing]
"""
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _fresh(method: str, url: str, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    """One request on a new connection, so the kernel may hand it to either process."""
    with requests.Session() as s:
        return s.request(method, url, headers={"Connection": "close", **kwargs.pop("headers", {})}, timeout=30,
                         **kwargs)


def _many(method: str, url: str, n: int, **kwargs) -> list[requests.Response]:  # type: ignore[no-untyped-def]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: _fresh(method, url, **kwargs), range(n)))


def _up(url: str, fleet: Fleet) -> bool:
    if fleet.procs["web"].poll() is not None:
        pytest.fail(fleet.log("web")[-3000:])
    try:
        return _fresh("GET", url).ok
    except requests.ConnectionError:
        return False


def _pids(folder: Path) -> set[str]:
    return {m.group(1) for f in folder.glob("*.db") if (m := re.search(r"_(\d+)\.db$", f.name))}


def test_two_gunicorn_processes_share_state(db_url: str, tmp_path: Path) -> None:
    env = base_env(db_url, tmp_path / "instance", None)
    project = tmp_path / "project"
    cli(["init", str(project)], env)
    cli(["publish", "--by", "test"], env, cwd=project)
    cli(["users", "add", "mia", "--role", "marketing", "--password", "Secret-Tea-42"], env)
    token = cli(["tokens", "create", "mia"], env).strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    fleet = Fleet(tmp_path)
    try:
        fleet.start("web", ["serve", "--workers", "2", "--port", str(port), "--threads", "1"], env)
        wait_for(lambda: _up(f"{base}/healthz", fleet), 60, "gunicorn", every=0.3)
        bearer = {"Authorization": f"Bearer {token}"}

        # Both processes answer (each writes its own metrics file once it has
        # served; the second may still be booting when the first answers) and know the token.
        folder = tmp_path / "instance" / "metrics"
        statuses: Counter[int] = Counter()

        def both_served() -> bool:
            statuses.update(a.status_code for a in _many("GET", f"{base}/api/v1/tasks", 20, headers=bearer))
            return len(_pids(folder)) >= 2

        wait_for(both_served, 60, "requests answered by both processes", every=0.2)
        assert set(statuses) == {200} and statuses[200] >= 20, statuses

        # A form published after start is served by both (definition caches check the fingerprint).
        assert _fresh("POST", f"{base}/api/v1/forms/fleet_probe/records", headers=bearer,
                      json={"note": "before"}).status_code == 404
        (project / "forms" / "fleet_probe.yaml").write_text(PROBE_FORM, encoding="utf-8")
        cli(["publish", "--by", "test"], env, cwd=project)
        time.sleep(1.5)  # the registry's staleness bound is one second
        created = _many("POST", f"{base}/api/v1/forms/fleet_probe/records", 40, headers=bearer,
                        json={"note": "after"})
        assert Counter(a.status_code for a in created) == {201: 40}, [a.text[:200] for a in created[:3]]
        listed = _fresh("GET", f"{base}/api/v1/forms/fleet_probe/records?per_page=100", headers=bearer).json()
        assert listed.get("total", len(listed.get("items", []))) == 40

        # Revoked in another process (the CLI): refused by both within the token cache's second.
        cli(["tokens", "revoke", "mia"], env)
        time.sleep(1.5)
        refused = Counter(a.status_code for a in _many("GET", f"{base}/api/v1/tasks", 40, headers=bearer))
        assert set(refused) <= {401, 429} and refused[401] >= 1, refused
        # …and the refusals of both processes count against the address
        # together (20 free, kept in the database): the rest are 429.
        assert refused[401] <= 20 and refused[429] >= 20, refused

        # Sign-in failures count in the database: five wrong passwords through
        # either process lock the account for both.
        def attempt(password: str) -> int:
            with requests.Session() as s:
                page = s.get(f"{base}/login", headers={"Connection": "close"}, timeout=30)
                match = CSRF.search(page.text)
                assert match, page.text[:500]
                answer = s.post(f"{base}/login", headers={"Connection": "close"}, timeout=30,
                                data={"username": "mia", "password": password, "csrf_token": match.group(1)},
                                allow_redirects=False)
                return answer.status_code

        assert [attempt("wrong-password") for _ in range(5)] == [401, 401, 401, 401, 429]
        assert attempt("Secret-Tea-42") == 429  # locked, even with the right password

        # One scrape sums both processes' request counts.
        scrape = _fresh("GET", f"{base}/metrics").text
        counts = [s.value for f in text_string_to_metric_families(scrape) for s in f.samples
                  if s.name == "promoflow_http_request_duration_seconds_count"
                  and s.labels.get("endpoint") == "health.healthz"]
        assert sum(counts) >= 1
        total = sum(s.value for f in text_string_to_metric_families(scrape) for s in f.samples
                    if s.name == "promoflow_http_request_duration_seconds_count")
        assert total >= statuses[200] + 1 + 40 + 40 + 12
    finally:
        fleet.stop_all()
    assert "Traceback" not in fleet.log("web"), fleet.log("web")[-3000:]
