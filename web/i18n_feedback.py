"""Chinese and English for the survey pages and the feedback list (web/feedback.py); merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
}
