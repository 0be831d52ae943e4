"""100,000 SMS through the dispatcher to a local fake Aliyun endpoint, next to
a bare loop posting the same messages with one ``requests.Session``.

* project: outbox rows (SQLite file, migrated) → :class:`engine.dispatch.Dispatcher`
  (claims committed first, batches of 1,000, Aliyun's default rate limit of
  5,000 a second on the wall clock, attempt history written) → the Aliyun
  connector (``SendBatchSms``, 100 numbers a request, signed) → every row
  settled ``sent``;
* baseline: a loop that signs and posts one ``SendSms`` per message over one
  ``requests.Session`` (no database, no bookkeeping).

Both talk to the same fake (tests/connectors/fakes/aliyun.py: a threaded
werkzeug server that checks the signature, nonce, sign name, template and
numbers as the provider does).

    python bench/dispatch.py [--scale S] [--db URL]

The last line is ``ratio=R project=P baseline=B unit=msg/s`` with R = P ÷ B
(higher is better; the target is R ≥ 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "connectors")]

import requests

from connectors.aliyun_sms import API_VERSION, rpc_signature
from connectors.registry import load_connector
from engine.definitions.specs import ConnectorSpec
from engine.dispatch import DispatchReport, Dispatcher
from engine.storage import dispatch_repo, outbox_repo
from engine.storage.database import make_engine, make_session_factory, transaction
from engine.storage.migrate import upgrade
from engine.storage.times import to_db_time

try:
    from fakes.aliyun import FakeAliyun
except ImportError as missing:  # pragma: no cover - the connectors' fakes are part of the repository
    raise SystemExit("bench/dispatch.py needs tests/connectors/fakes/aliyun.py") from missing

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
KEY_ID, KEY_SECRET = "test-key-id", "test-key-secret"
SIGN, TEMPLATE = "促销通", "SMS_100"


def phone(i: int) -> str:
    return f"139{i:08d}"


def fill(session_factory, n: int) -> None:
    stamp = to_db_time(NOW)
    with transaction(session_factory) as session:
        for start in range(0, n, 5000):
            outbox_repo.insert_messages(session, [{
                "channel": "sms", "connector": "aliyun", "recipient": phone(i), "body": "",
                "payload": {"template_code": TEMPLATE, "params": {"code": f"{i % 10000:04d}"}},
                "idempotency_key": f"bench-{i}", "delivery_class": "marketing", "status": "queued",
                "attempts": 0, "next_attempt_at": stamp, "created_at": stamp,
            } for i in range(start, min(n, start + 5000))], returning=False)


def project(url: str, session_factory, n: int) -> float:
    spec = ConnectorSpec(id="aliyun", type="aliyun_sms", channel="sms",
                         settings={"base_url": url, "sign_name": SIGN},
                         secrets={"access_key_id": "BENCH_KEY_ID", "access_key_secret": "BENCH_KEY_SECRET"})
    with requests.Session() as http:
        connector = load_connector(spec, env={"BENCH_KEY_ID": KEY_ID, "BENCH_KEY_SECRET": KEY_SECRET},
                                   session=http)
        dispatcher = Dispatcher(session_factory, {"aliyun": connector}, worker_id="bench")
        report = DispatchReport()
        start = time.perf_counter()
        # The wall clock moves here (unlike the tests): the connector's default
        # rate limit (Aliyun's documented 5,000 QPS) is kept as in production.
        while report.sent < n:
            done = dispatcher.run_once(datetime.now(UTC), batch=1000)
            report.add(done)
            if done.claimed == 0:
                time.sleep(0.01)
            if time.perf_counter() - start > 3600:
                break
        elapsed = time.perf_counter() - start
    with session_factory() as session:
        counts = dispatch_repo.status_counts(session)
    assert report.sent == n and counts == {"sent": n}, (report, counts)
    return elapsed


def baseline(url: str, n: int) -> float:
    with requests.Session() as http:
        start = time.perf_counter()
        for i in range(n):
            params = {
                "AccessKeyId": KEY_ID, "Action": "SendSms", "Format": "JSON", "RegionId": "cn-hangzhou",
                "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
                "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": API_VERSION,
                "PhoneNumbers": phone(i), "SignName": SIGN, "TemplateCode": TEMPLATE,
                "TemplateParam": json.dumps({"code": f"{i % 10000:04d}"}), "OutId": str(i + 1),
            }
            params["Signature"] = rpc_signature("POST", params, KEY_SECRET)
            answer = http.post(f"{url}/", data=params, headers={"Accept": "application/json"}, timeout=10).json()
            assert answer["Code"] == "OK", answer
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--db", help="database URL (default: a SQLite file in a temporary directory)")
    args = parser.parse_args()
    n = max(100, int(100_000 * args.scale))
    fake = FakeAliyun(KEY_ID, KEY_SECRET)
    fake.templates[TEMPLATE] = ["code"]
    fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(args.db or f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
            upgrade(engine)
            session_factory = make_session_factory(engine)
            fill(session_factory, n)
            t_project = project(fake.url, session_factory, n)
            engine.dispose()
        delivered = len(fake.delivered)
        assert delivered == n, delivered
        t_base = baseline(fake.url, n)
        assert len(fake.delivered) == 2 * n
    finally:
        fake.stop()
    p, b = n / t_project, n / t_base
    print(f"messages={n} backend={(args.db or 'sqlite').split(':')[0]}")
    print(f"project: dispatcher + SendBatchSms   {t_project:8.2f} s  {p:10.0f} msg/s")
    print(f"baseline: one SendSms per message    {t_base:8.2f} s  {b:10.0f} msg/s")
    print(f"ratio={p / b:.2f} project={p:.0f} baseline={b:.0f} unit=msg/s")


if __name__ == "__main__":
    main()
