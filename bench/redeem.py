"""Coupon redemptions per second over HTTP, 8 concurrent clients.

The project: `promoflow serve` (waitress), POST /api/v1/coupons/redeem with an
``integration`` token: the redemption service reads the coupon and its
owner, counts what the pool's anti-abuse rules need (the shipped win-back
pool declares per-store and per-device velocity), changes the coupon with a
conditional UPDATE, writes the ``coupon.redeemed`` event and the attempt log,
one transaction. The baseline, in the same run, same server, same database
and table: a bare Flask endpoint doing the one conditional UPDATE
(bench/baseline_redeem_app.py). Every request of either side redeems a
different coupon, issued beforehand by the product itself (customers
imported with ``promoflow customers import``, coupons issued by
``promoflow rules run winback_90d``); between rounds, untimed, a side's used
coupons are made usable again so neither runs out.

    python bench/redeem.py [--scale S] [--backend both|sqlite|postgresql]

Last line: ratio=R project=P baseline=B unit=req/s (the PostgreSQL figures
when both backends ran; each backend prints its own line first).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import LoadResult, free_port, post_load, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMOFLOW = [sys.executable, "-m", "web.cli"]


def run(cmd: list[str], env: dict) -> str:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def start(cmd: list[str], env: dict, port: int) -> subprocess.Popen:
    log = open(os.environ.get("BENCH_LOG_DIR", "/tmp") + f"/pf-bench-redeem-{port}.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, proc)
    return proc


def issue(env: dict, tmp: str, n: int, url: str) -> list[tuple[str, int]]:
    """``n`` customers lapsed 100 days ago, imported; the win-back rule issues each a coupon."""
    placed = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%d %H:%M")
    path = Path(tmp) / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["external_id", "name", "phone", "consent_sms", "order_id", "order_amount", "order_placed_at"])
        for i in range(n):
            w.writerow([f"c{i}", f"顾客{i}", f"139{i:08d}", "1", f"hist-{i}", "150", placed])
    run(PROMOFLOW + ["customers", "import", str(path), "--no-progress"], env)
    now = datetime.now(UTC).astimezone().replace(hour=10, minute=30).isoformat(timespec="minutes")
    run(PROMOFLOW + ["rules", "run", "winback_90d", "--at", now], env)
    from sqlalchemy import text

    from engine.storage.database import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:  # reading which code went to whom (the till scans it from the customer's SMS)
        rows = conn.execute(text("SELECT code, customer_id FROM coupons WHERE pool_id = 'winback20' "
                                 "AND status = 'issued' ORDER BY id")).all()
    engine.dispose()
    return [(code, cid) for code, cid in rows]


def reset(url: str, coupons: list[tuple[str, int]]) -> None:
    """Make a side's coupons usable again between rounds (bench bookkeeping, not timed)."""
    from sqlalchemy import bindparam, text

    from engine.storage.database import make_engine

    engine = make_engine(url)
    stmt = text("UPDATE coupons SET status = 'issued', redeemed_at = NULL, redeemed_order = NULL, "
                "redeemed_amount = NULL, redeemed_store = NULL, redeemed_device = NULL, redeemed_phone = NULL "
                "WHERE code IN :codes AND status <> 'issued'").bindparams(bindparam("codes", expanding=True))
    with engine.begin() as conn:
        for i in range(0, len(coupons), 500):
            conn.execute(stmt, {"codes": [c for c, _ in coupons[i:i + 500]]})
    engine.dispose()


def redeem_load(port: int, path: str, supply: deque, headers: dict[str, str], *, seconds: float,
                threads: int, tag: str) -> LoadResult:
    """``_load.post_load`` where every request redeems the next code from ``supply``."""

    def next_body() -> bytes | None:
        try:
            code, cid = supply.popleft()
        except IndexError:
            return None
        k = len(supply)
        return json.dumps({"code": code, "customer_id": cid, "order_id": f"{tag}-{code}",
                           "order_amount": "128.00", "store": f"store{k % 997}", "device": f"till{k}"}).encode()

    return post_load(port, path, None, headers, seconds=seconds, threads=threads, expect=200, next_body=next_body)


def one_backend(backend: str, url: str, args: argparse.Namespace, tmp: str) -> tuple[float, float, float]:
    seconds = max(2.0 * args.rounds, 30.0 * args.scale)
    n = max(6000, int(20_000 * args.scale))
    env = dict(os.environ, PROMOFLOW_INSTANCE_PATH=f"{tmp}/instance-{backend}", PROMOFLOW_DATABASE_URL=url,
               BENCH_THREADS=str(args.server_threads), PYTHONPATH=str(ROOT))
    run(PROMOFLOW + ["db", "upgrade"], env)
    run(PROMOFLOW + ["publish"], env)
    run(PROMOFLOW + ["users", "add", "pos", "--role", "integration", "--password", "bench-password-1"], env)
    token = max(re.findall(r"[A-Za-z0-9_\-\.]{24,}", run(PROMOFLOW + ["tokens", "create", "pos"], env)), key=len)
    t = time.perf_counter()
    coupons = issue(env, tmp, n, url)
    print(f"[{backend}] {len(coupons):,} coupons issued by the win-back rule in {time.perf_counter() - t:.1f} s")
    half = len(coupons) // 2
    halves = {"project": coupons[:half], "baseline": coupons[half:]}
    supply = {name: deque(codes) for name, codes in halves.items()}
    port, base_port = free_port(), free_port()
    gate = [] if args.write_concurrency is None else ["--write-concurrency", str(args.write_concurrency)]
    server = start(PROMOFLOW + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                "--threads", str(args.server_threads), *gate], env, port)
    baseline_server = start([sys.executable, str(Path(__file__).with_name("baseline_redeem_app.py")), url,
                             str(base_port)], env, base_port)
    target = {"project": (port, "/api/v1/coupons/redeem", {"Authorization": f"Bearer {token}"}),
              "baseline": (base_port, "/redeem", {})}
    runs: dict[str, list[LoadResult]] = {"project": [], "baseline": []}
    try:
        for name, (p, path, headers) in target.items():  # warm-up
            redeem_load(p, path, supply[name], headers, seconds=1.0, threads=2, tag="warm")
        for r in range(args.rounds):  # alternate short rounds; compare medians
            for name, (p, path, headers) in target.items():
                reset(url, halves[name])  # untimed: every code of the side is usable again
                supply[name] = deque(halves[name])
                runs[name].append(redeem_load(p, path, supply[name], headers, seconds=seconds / args.rounds,
                                              threads=args.threads, tag=f"{name}{r}"))
                if not supply[name]:
                    print(f"[{backend}] warning: {name} ran out of coupons in round {r + 1}", file=sys.stderr)
    finally:
        for proc in (server, baseline_server):
            proc.terminate()
            proc.wait(10)
    med = {k: sorted(v, key=lambda r: r.rate)[len(v) // 2] for k, v in runs.items()}
    for name in runs:
        print(f"[{backend}] {name:<9} rounds: " + ", ".join(f"{r.rate:.1f}" for r in runs[name]) + " req/s; median "
              f"{med[name].requests} ok, {med[name].errors} errors, statuses {med[name].statuses}")
    ratio = med["project"].rate / med["baseline"].rate if med["baseline"].rate else 0.0
    print(f"[{backend}] ratio={ratio:.3f} project={med['project'].rate:.1f} baseline={med['baseline'].rate:.1f} "
          f"unit=req/s")
    return ratio, med["project"].rate, med["baseline"].rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the default duration (0 < S <= 1)")
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--threads", type=int, default=8, help="client connections")
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating rounds; medians are compared (short rounds: the win-back pool issues at "
                             "most 10,000 coupons, half for each side, made usable again before each round)")
    parser.add_argument("--server-threads", type=int, default=4, help="waitress threads, the same for both servers")
    parser.add_argument("--write-concurrency", type=int, default=None,
                        help="passed to `promoflow serve` (default: serve's own, 1 on SQLite, no gate on PostgreSQL)")
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    from rules import drop_schema, pg_url

    results = []
    with tempfile.TemporaryDirectory(prefix="pf-bench-redeem-") as tmp:
        if args.backend in ("both", "sqlite"):
            results.append(one_backend("sqlite", f"sqlite:///{tmp}/project.sqlite", args, tmp))
        if args.backend in ("both", "postgresql"):
            url = pg_url()
            if url is not None:
                try:
                    results.append(one_backend("postgresql", url, args, tmp))
                finally:
                    drop_schema(url)
    if not results:
        raise SystemExit("no backend ran")
    ratio, project, baseline = min(results)  # the worse backend is the one to report
    print(f"ratio={ratio:.3f} project={project:.1f} baseline={baseline:.1f} unit=req/s")


if __name__ == "__main__":
    main()
