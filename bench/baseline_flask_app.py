"""The baseline for bench/form_submit.py: a bare Flask endpoint that parses the
same JSON and inserts one row with SQLAlchemy, nothing else (no validation,
no audit, no event, no permission check)."""

from __future__ import annotations

import os
import sys

from flask import Flask, jsonify, request
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, create_engine, event, func, insert


def make_app(url: str) -> Flask:
    engine = create_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record):  # same pragmas as the project
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()
    metadata = MetaData()
    rows = Table("bench_rows", metadata, Column("id", Integer, primary_key=True), Column("form_id", String(64)),
                 Column("data", JSON), Column("created_at", DateTime, server_default=func.now()))
    metadata.create_all(engine)
    app = Flask(__name__)

    @app.post("/records")
    def create():
        data = request.get_json()
        with engine.begin() as conn:
            new_id = conn.execute(insert(rows).values(form_id="activity_request", data=data)).inserted_primary_key[0]
        return jsonify({"id": new_id, "data": data}), 201

    return app


if __name__ == "__main__":
    from waitress import serve

    url, port = sys.argv[1], int(sys.argv[2])
    serve(make_app(url), host="127.0.0.1", port=port, threads=int(os.environ.get("BENCH_THREADS", "4")),
          _quiet=True)
