"""What a data-changing statement reports back.

``Session.execute`` is typed as returning a plain ``Result``; for an INSERT,
UPDATE or DELETE it is always a ``CursorResult``, whose ``rowcount`` says how
many rows matched. Naming that once keeps the repositories typed without a
``type: ignore`` at every conditional write.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy.engine import CursorResult, Result


def affected(result: Result[Any]) -> int:
    """The rows an INSERT, UPDATE or DELETE matched (0 when the driver reports none)."""
    count = cast(CursorResult[Any], result).rowcount
    return int(count) if count is not None and count > 0 else 0
