"""``/sandbox``: the inbox of the built-in sandbox connector
(:mod:`connectors.sandbox`), for marketing and admins.

In the demo (setting ``connector_sandbox``) every SMS, e-mail and WeCom
message is delivered here instead of to a provider; this page shows them per
channel, newest first, like a phone's or a mail client's inbox. Links in a
message are clickable, so a short ``/c/`` link can be followed as a customer
would (the click is recorded and the journey sees it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, abort, g, render_template, request
from markupsafe import Markup, escape

from connectors.sandbox import read_inbox
from engine.clicks import URL_PATTERN
from engine.dispatch import sandbox_folder

from . import services
from .auth import login_required

bp = Blueprint("sandbox", __name__)

#: Who may read the sandbox (admins always may).
SANDBOX_ROLES = ("marketing", "marketing_manager")
CHANNELS = ("sms", "email", "wecom")
LIMIT = 200


def linkify(text: str | None) -> Markup:
    """``text`` escaped, its http(s) URLs as links (no other scheme can become one)."""
    out, last = [], 0
    source = text or ""
    for match in URL_PATTERN.finditer(source):
        out.append(escape(source[last:match.start()]))
        url = escape(match.group(0))
        out.append(Markup(f'<a href="{url}" target="_blank" rel="noopener noreferrer">{url}</a>'))
        last = match.end()
    out.append(escape(source[last:]))
    return Markup("").join(out)


@bp.route("/sandbox")
@login_required
def inbox() -> Any:
    user = g.get("user")
    if user is None or not user.has_any(SANDBOX_ROLES):
        abort(403)
    channel = request.args.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        channel = None
    recipient = (request.args.get("to") or "").strip() or None
    svc = services()
    items = read_inbox(Path(sandbox_folder(svc.settings)), channel=channel, recipient=recipient, limit=LIMIT)
    return render_template("sandbox.html", items=items, channel=channel, channels=CHANNELS, recipient=recipient,
                           sandbox_on=bool(svc.settings.connector_sandbox), linkify=linkify, limit=LIMIT)
