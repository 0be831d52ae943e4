"""Persistence: SQLAlchemy 2 models, Alembic migrations and small repositories.

This package is the only place in the engine that imports SQLAlchemy, so the
rest of the engine stays pure (data in, data out) and testable without a
database. It runs unchanged on SQLite (WAL, the embedded default) and
PostgreSQL (scale-out).
"""
