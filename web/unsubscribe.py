"""Unsubscribe pages: the ``{{ unsubscribe_url }}`` of rule messages and the
SMTP connector's ``List-Unsubscribe`` one-click link (RFC 8058).

* ``/u/<token>``: links that rules put in messages, signed with a key derived
  from the instance secret (:mod:`engine.feedback.unsubscribe_links`).
* ``/unsubscribe/<connector_id>?token=…``: the SMTP connector's links, signed
  with that connector's ``unsubscribe_key`` secret (read from the environment
  through the connector registry, never stored).

GET shows a confirmation page with one button, because mail scanners and link
previews fetch every URL in a message and must not opt anyone out. POST opts
the customer out — the button, or a mail client's one-click POST with the body
``List-Unsubscribe=One-Click``, which carries no CSRF token (the signed token
is the authority, as RFC 8058 intends). Both go through
:func:`engine.feedback.service.withdraw_consent`, the one opt-out path, so
the rule audiences and the dispatcher's last-moment check see it at once.
Repeating it is harmless. A tampered link answers 403, an expired one 410, a
customer that no longer exists 404 — never a 500.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app, render_template, request

from engine.conditions import CONSENT_CHANNELS
from engine.feedback.service import withdraw_consent
from engine.feedback.unsubscribe_links import (
    ALL_CHANNELS,
    ExpiredUnsubscribeToken,
    InvalidUnsubscribeToken,
    instance_key,
    verify_unsubscribe,
)
from engine.ports import ConfigurationError
from engine.storage import feedback_repo
from engine.storage.database import transaction

from . import services
from .i18n import t

bp = Blueprint("unsubscribe", __name__)

#: The connector types whose links this page settles.
LINK_CONNECTOR_TYPES = ("smtp",)


@bp.record_once
def _exempt(state: Any) -> None:
    """The one-click POST comes from a mail client: no session, no CSRF token."""
    csrf = state.app.extensions.get("csrf")
    if csrf is not None:
        csrf.exempt(f"{__name__}.instance_link")
        csrf.exempt(f"{__name__}.connector_link")


def _page(status: int, title_key: str, text_key: str, *, confirm: bool = False, **params: Any) -> Any:
    html = render_template("unsubscribe.html", title=t(title_key), text=t(text_key, **params), confirm=confirm)
    return html, status, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                          "X-Robots-Tag": "noindex"}


def _channels(channel: str) -> tuple[str, ...]:
    return CONSENT_CHANNELS if channel == ALL_CHANNELS else (channel,)


def _channel_words(channels: tuple[str, ...]) -> str:
    return t("unsub_channel_sep").join(t(f"unsub_channel_{c}") if c in CONSENT_CHANNELS else c for c in channels)


def _settle(key: str | bytes, token: str, *, source: str) -> Any:
    svc = services()
    now = svc.now()
    try:
        customer, channel = verify_unsubscribe(token, key, now)
    except ExpiredUnsubscribeToken:
        return _page(410, "unsub_expired_title", "unsub_expired_text")
    except InvalidUnsubscribeToken:
        return _page(403, "unsub_invalid_title", "unsub_invalid_text")
    channels = _channels(channel)
    if channel != ALL_CHANNELS and channel not in CONSENT_CHANNELS:
        return _page(403, "unsub_invalid_title", "unsub_invalid_text")
    try:
        customer_id = int(customer)
    except ValueError:
        return _page(403, "unsub_invalid_title", "unsub_invalid_text")
    words = _channel_words(channels)
    if request.method == "GET":
        return _page(200, "unsub_confirm_title", "unsub_confirm_text", confirm=True, channels=words)
    with transaction(svc.session_factory) as session:
        if feedback_repo.customer_by_id(session, customer_id) is None:
            return _page(404, "unsub_unknown_title", "unsub_unknown_text")
        withdraw_consent(session, customer_id, channels, source=source, now=now)
    return _page(200, "unsub_done_title", "unsub_done_text", channels=words)


@bp.route("/u/<token>", methods=["GET", "POST"])
def instance_link(token: str) -> Any:
    """A rule message's link (``{{ unsubscribe_url }}``)."""
    return _settle(instance_key(services().settings.secret_key), token, source="unsubscribe_link")


@bp.route("/unsubscribe/<connector_id>", methods=["GET", "POST"])
def connector_link(connector_id: str) -> Any:
    """An SMTP connector's ``List-Unsubscribe`` link, verified with its own key."""
    from connectors._base import BaseConnector
    from connectors.registry import load_connector

    token = request.args.get("token", "")
    spec = services().registry.current().connectors.get(connector_id)
    if spec is None or not spec.enabled or spec.type not in LINK_CONNECTOR_TYPES:
        return _page(404, "unsub_unknown_title", "unsub_unknown_text")
    try:
        connector = load_connector(spec, env=os.environ, clock=services().clock)
    except ConfigurationError as exc:
        current_app.logger.warning("unsubscribe link for %s: connector not configured: %s", connector_id, exc)
        return _page(503, "unsub_unavailable_title", "unsub_unavailable_text")
    try:
        key = connector.secret("unsubscribe_key") if isinstance(connector, BaseConnector) else None
    except (KeyError, ConfigurationError):
        key = None
    finally:
        connector.close()
    if not key:
        return _page(503, "unsub_unavailable_title", "unsub_unavailable_text")
    return _settle(key, token, source=f"list_unsubscribe:{connector_id}")
