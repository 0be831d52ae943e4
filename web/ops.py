"""Operations wiring (issue 17): health and readiness, Prometheus metrics,
request ids in logs. One ``init_app`` so the app factory gains one line."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask, csrf: object | None = None) -> None:
    from . import health, logs, metrics

    logs.init_app(app)
    app.register_blueprint(health.bp)
    metrics.init_app(app)
    if csrf is not None:
        csrf.exempt(health.bp)  # type: ignore[attr-defined]
        csrf.exempt(metrics.bp)  # type: ignore[attr-defined]


__all__ = ["init_app"]
