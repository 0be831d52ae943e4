"""Chinese and English for the messages page (web/messages.py); merged into :data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
}
