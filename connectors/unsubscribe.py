"""Signed one-click unsubscribe tokens (RFC 8058 links in e-mail).

The token format and its checks live in the engine
(:mod:`engine.feedback.unsubscribe_links`), because the web page that settles
a link and the rules that put links in messages need them too; the SMTP
connector signs with its own ``unsubscribe_key`` secret through this name.
"""

from __future__ import annotations

from engine.feedback.unsubscribe_links import InvalidUnsubscribeToken, sign_unsubscribe, verify_unsubscribe

__all__ = ["InvalidUnsubscribeToken", "sign_unsubscribe", "verify_unsubscribe"]
