"""Stored record data seen through the condition language's eyes.

Record data keeps money as text (``"60000.00"``) so amounts are exact in JSON;
conditions compare numbers as Decimals. :func:`condition_row` bridges the two,
so ``visible_if``, ``required_if`` and workflow ``when`` tests read a money
field as the number it is. Use it wherever a predicate runs over record data.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.definitions.specs import FieldSpec, FormSpec

from .types import MONEY_TEXT


def condition_row(fields: FormSpec | tuple[FieldSpec, ...], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with money text turned into Decimal; other values as they are."""
    specs = fields.fields if isinstance(fields, FormSpec) else fields
    row = dict(data)
    for f in specs:
        if f.type == "money":
            value = row.get(f.key)
            if isinstance(value, str) and MONEY_TEXT.fullmatch(value.strip()):
                try:
                    row[f.key] = Decimal(value.strip())
                except InvalidOperation:  # pragma: no cover - the regex admits only decimals
                    row[f.key] = None
    return row


__all__ = ["condition_row"]
