"""The baseline for bench/redeem.py: a bare Flask endpoint that parses the same
JSON and runs one conditional UPDATE on the project's own ``coupons`` table
(``… SET status='redeemed' WHERE code=? AND status='issued'``, rowcount), in
the same database, under the same server (waitress, same threads). Nothing
else: no token, no checks, no event, no attempt log."""

from __future__ import annotations

import os
import sys

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, event, text

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from engine.storage.database import SQLITE_WAL_AUTOCHECKPOINT_PAGES  # noqa: E402  (same pragmas as the project)

UPDATE = text("UPDATE coupons SET status = 'redeemed', redeemed_at = CURRENT_TIMESTAMP, redeemed_order = :order "
              "WHERE code = :code AND status = 'issued'")


def make_app(url: str) -> Flask:
    engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # same pragmas as the project
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
            cur.close()
    app = Flask(__name__)

    @app.post("/redeem")
    def redeem():
        data = request.get_json()
        with engine.begin() as conn:
            done = conn.execute(UPDATE, {"code": data["code"], "order": data["order_id"]}).rowcount == 1
        return jsonify({"status": "redeemed" if done else "refused", "code": data["code"]}), 200 if done else 422

    return app


if __name__ == "__main__":
    from waitress import serve

    url, port = sys.argv[1], int(sys.argv[2])
    serve(make_app(url), host="127.0.0.1", port=port, threads=int(os.environ.get("BENCH_THREADS", "4")),
          _quiet=True)
