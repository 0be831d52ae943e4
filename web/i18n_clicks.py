"""Chinese and English for short links, the sandbox inbox and connector
warnings (web/clicks.py, web/sandbox.py, the /messages banner); merged into
:data:`web.i18n.CATALOG`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "click_missing_title": ("链接无效", "Link not found"),
    "click_missing_text": ("这个链接不存在或已失效，请检查短信或邮件中的链接是否完整。",
                           "This link does not exist or is no longer valid. Please check that the link in your "
                           "message is complete."),
}
