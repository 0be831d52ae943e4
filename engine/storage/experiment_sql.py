"""The experiment arm of a subject as a SQL expression (SQLite and PostgreSQL alike).

The same integer steps as :func:`engine.experiments.bucket`, with ``+ * %``
only, on non-negative values below 2⁶², so both databases compute exactly
what Python does; the property test in tests/automation/test_experiments.py
proves it on both.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, literal_column

from engine.experiments import BUCKETS, MODULUS, Assignment

__all__ = ["arm_column", "arm_sql", "bucket_sql"]


def bucket_sql(keys: tuple[int, int], id_sql: str) -> str:
    """The bucket (0 … 9,999) of the subject whose id is the SQL expression ``id_sql``."""
    a, b = (int(k) for k in keys)
    # BIGINT: PostgreSQL types bare literals as 32-bit integers, whose products overflow.
    return f"(((CAST({id_sql} AS BIGINT) % {MODULUS}) * {a} + {b}) % {MODULUS} % {BUCKETS})"


def arm_sql(assignment: Assignment, id_sql: str) -> str:
    """``CASE`` over the bucket: the arm key of the subject ``id_sql`` (keys are identifiers: no quoting issue)."""
    b = bucket_sql(assignment.keys, id_sql)
    parts = [f"WHEN {b} < {upper} THEN '{key}'" for upper, key in assignment.bounds[:-1]]
    last = assignment.bounds[-1][1]
    return f"(CASE {' '.join(parts)} ELSE '{last}' END)" if parts else f"'{last}'"


def arm_column(assignment: Assignment | None, id_sql: str) -> Any:
    """The arm as a Core column for ``INSERT … SELECT`` (NULL without an experiment)."""
    from sqlalchemy import null

    if assignment is None:
        return null()
    return literal_column(arm_sql(assignment, id_sql), String)
