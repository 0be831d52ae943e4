"""``/c/<token>``: the short links the dispatcher puts in customer messages
(:mod:`engine.clicks`).

A known token counts the click (the first one per link writes
``message.clicked``) and redirects 302 to the URL stored for it — which is
always a URL the message's template wrote itself, so this is no open
redirect: there is no parameter to point it elsewhere. A malformed, tampered
or unknown token answers a friendly 404 page (zh/en). ``HEAD`` requests
(link previews, mail scanners) are redirected without counting.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request

from engine.clicks import follow, valid_token_shape

from . import services
from .i18n import t

bp = Blueprint("clicks", __name__)

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


@bp.get("/c/<path:token>")
def click(token: str) -> Any:
    """Count the click and send the customer on to the template's URL."""
    svc = services()
    if request.method == "HEAD":
        from engine.storage import clicks_repo

        with svc.session_factory() as session:
            link = clicks_repo.find(session, token) if valid_token_shape(token) else None
        url = link.url if link is not None else None
    else:
        followed = follow(svc.session_factory, token, svc.now(), request.headers.get("User-Agent"))
        url = followed.url if followed is not None else None
    if url is None:
        html = render_template("link_missing.html", title=t("click_missing_title"), text=t("click_missing_text"))
        return html, 404, _HEADERS
    response = redirect(url, code=302)
    response.headers.update(_HEADERS)
    return response
