"""Error responses: JSON under ``/api/``, a small localized page elsewhere.

Routing errors (an unknown URL, a wrong method) happen before a blueprint is
chosen, so the choice between JSON and HTML is made by path, app-wide.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .i18n import t

log = logging.getLogger(__name__)

API_PREFIX = "/api/"

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
          422: "invalid", 428: "precondition_required"}


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX)


def api_error(status: int, message: str, code: str | None = None, **headers: str) -> Any:
    """A JSON error body ``{"error": {"code", "message"}}`` with ``status``."""
    response = jsonify({"error": {"code": code or _CODES.get(status, "error"), "message": message}})
    response.status_code = status
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="promoflow"')
    return response


def _html_error(status: int, title: str, text: str) -> Any:
    return render_template("error.html", status=status, title=title, text=text), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> Any:
        if is_api_request():
            return api_error(400, exc.description or "CSRF check failed")
        return _html_error(400, t("bad_request"), t("csrf_failed"))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        if is_api_request():
            response = api_error(status, exc.description or exc.name)
            if status == 405 and exc.get_response().headers.get("Allow"):
                response.headers["Allow"] = exc.get_response().headers["Allow"]
            return response
        titles = {403: ("forbidden", "forbidden_text"), 404: ("not_found", "not_found_text"),
                  413: ("too_large", "too_large")}
        title_key, text_key = titles.get(status, ("bad_request", "bad_request"))
        if status >= 500:
            title_key = text_key = "server_error"
        return _html_error(status, t(title_key), t(text_key) if status != 400 else (exc.description or ""))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # A bug: logged with its traceback, answered without details.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if is_api_request():
            return api_error(500, "internal error", "internal")
        return _http(InternalServerError())
