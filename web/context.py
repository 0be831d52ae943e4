"""Per-request wiring for the HTML pages: the signed-in user, the locale,
template helpers and security headers."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request, url_for

from .auth import load_user
from .i18n import LOCALES, get_locale, label, remember_locale, t

#: Scripts and styles come from our own static files only: no inline script,
#: so injected markup cannot run even if escaping were ever missed.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _lang_url(lang: str) -> str:
    args: dict[str, Any] = request.args.to_dict(flat=False)
    args["lang"] = [lang]
    return url_for(request.endpoint or "records.home", **(request.view_args or {}), **args)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask) -> None:
    """Register the hooks and template globals."""

    @app.before_request
    def _before() -> Any:
        if request.blueprint != "api":
            return load_user()  # a redirect when the password must be changed first
        return None

    app.after_request(remember_locale)
    app.after_request(_security_headers)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"t": t, "label": label, "locale": get_locale(), "locales": LOCALES,
                "lang_url": _lang_url, "current_user": g.get("user")}
