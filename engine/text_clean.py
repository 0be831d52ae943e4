"""Characters that have no place in a name or a line of text, removed on the
way in (issue 16).

Control characters (C0 and C1, NUL included) and the Unicode bidirectional
controls (U+202A–U+202E embeddings and overrides, U+2066–U+2069 isolates,
U+200E/U+200F/U+061C marks) let a stored name display as something else: a
customer called "\u202egnp.exe" reads "exe.png" on a page, in a CSV or in a
message. They are stripped, not refused, because imports and CRMs carry them
by accident far more often than by intent. Zero-width joiners stay: emoji and
some scripts need them.
"""

from __future__ import annotations

import re

#: Bidirectional formatting characters.
BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_NAME_JUNK = re.compile(f"[\x00-\x1f\x7f-\x9f{BIDI}]")
#: Free text keeps tabs and line breaks.
_TEXT_JUNK = re.compile(f"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{BIDI}]")


def clean_name(text: str) -> str:
    """A one-line name without control or bidi characters, trimmed."""
    return _NAME_JUNK.sub("", text).strip()


def clean_text(text: str, *, multiline: bool = False) -> str:
    """Free text without bidi characters and controls; a single line loses its
    tabs and line breaks too, a multi-line text keeps them. NUL is left for
    the caller to refuse or strip, as its storage demands."""
    if not multiline:
        return _NAME_JUNK.sub(lambda m: m.group() if m.group() == "\x00" else "", text)
    return _TEXT_JUNK.sub("", text)


__all__ = ["BIDI", "clean_name", "clean_text"]
