"""Per-request wiring for the HTML pages: the signed-in user, the locale,
template helpers and security headers."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request, url_for
from flask.sessions import SecureCookieSessionInterface

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


#: Blueprints of the REST API: bearer tokens only (each authenticates in its own
#: ``before_request``), so the signed-in user of a session cookie means nothing there.
API_BLUEPRINTS = frozenset({"api", "orders_api", "coupons_api", "customers_api", "followups_api", "messages_api",
                            "rights_api"})


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, which builds its signer only for a request
    that sends a session cookie. A till or shop calling the API sends none, and
    building the signer (key derivation included) on each of its requests cost
    as much as one of its SQL statements; the empty session it gets is the one
    Flask would give it."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if app.secret_key and "HTTP_COOKIE" not in request.environ:  # no cookie at all: nothing to verify
            return self.session_class()
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    """Register the hooks and template globals."""
    app.session_interface = CookieSessionInterface()

    @app.before_request
    def _before() -> Any:
        if request.blueprint not in API_BLUEPRINTS:
            return load_user()  # a redirect when the password must be changed first
        return None

    app.after_request(remember_locale)
    app.after_request(_security_headers)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"t": t, "label": label, "locale": get_locale(), "locales": LOCALES,
                "lang_url": _lang_url, "current_user": g.get("user")}
