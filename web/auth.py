"""Sign in and out with a user name and password (argon2), kept in Flask's
signed session cookie; ``login_required`` for the HTML pages; the
change-password page.

Sessions are checked on the server on every request: the cookie carries the
user's *session version* (``sv``) and the time of sign-in (``at``). Logout, a
password change and an admin reset move the version on, so every older cookie
(a copy saved before logout included) stops working in every process; a
sign-in older than ``session_lifetime`` ends however often it is used.

Sign-in attempts are throttled per account and per address in the database
(``AccountService.login``); a locked attempt is refused with 429 and
``Retry-After`` before any password is verified.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from engine.accounts import TOKEN_CACHE_SECONDS, LoginLocked, PasswordRejected, WrongPassword
from engine.passwords import MAX_LENGTH, PasswordPolicy
from engine.settings import Settings

from . import services
from .i18n import t

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Pages a user whose password was reset may still open (the rest redirect to
#: the change-password page).
MUST_CHANGE_ALLOWED = frozenset({"auth.change_password", "auth.logout", "auth.login", "static"})


def account_options(settings: Settings, config: Mapping[str, Any]) -> dict[str, Any]:
    """``AccountService`` keyword arguments from the settings and the app's
    test config (``PASSWORD_HASHER``, ``LOGIN_THROTTLE``, ``TOKEN_CACHE_SECONDS``)."""
    options: dict[str, Any] = {"policy": PasswordPolicy(min_length=settings.password_min_length),
                               "token_cache_seconds": float(config.get("TOKEN_CACHE_SECONDS", TOKEN_CACHE_SECONDS))}
    if config.get("PASSWORD_HASHER"):
        options["hasher"] = config["PASSWORD_HASHER"]
    if config.get("LOGIN_THROTTLE"):
        options["throttle"] = config["LOGIN_THROTTLE"]
    return options


class LoginForm(FlaskForm):
    username = StringField(validators=[DataRequired(), Length(max=128)])
    password = PasswordField(validators=[DataRequired(), Length(max=MAX_LENGTH)])


class PasswordForm(FlaskForm):
    current = PasswordField(validators=[DataRequired(), Length(max=MAX_LENGTH)])
    new = PasswordField(validators=[DataRequired()])
    confirm = PasswordField(validators=[DataRequired()])


def _client_address() -> str | None:
    return request.remote_addr or None


def _wait_text(seconds: int) -> str:
    """``Retry-After`` as a person reads it: seconds under a minute, else whole minutes (rounded up)."""
    if seconds < 60:
        return t("wait_seconds", n=seconds)
    return t("wait_minutes", n=-(-seconds // 60))


def load_user() -> Any:
    """Before-request hook: ``g.user`` is the signed-in, active user or None.

    The session must carry the user's current session version and be younger
    than ``session_lifetime``; otherwise it is cleared. A user who must change
    their password is sent to the change-password page (the response is
    returned to the hook's caller)."""
    g.user = None
    g.must_change_password = False
    uid = session.get("uid")
    if not isinstance(uid, int):
        return None
    signed_in_at = session.get("at")
    lifetime = services().settings.session_lifetime
    now = services().now()
    if not isinstance(signed_in_at, int | float) or now - datetime.fromtimestamp(signed_in_at, UTC) > lifetime:
        session.clear()
        return None
    found = services().accounts.session_user(uid, session.get("sv"))
    if found is None:
        session.clear()
        return None
    g.user = found.principal
    g.must_change_password = found.must_change_password
    if found.must_change_password and request.endpoint not in MUST_CHANGE_ALLOWED:
        flash(t("pw_must_change"), "info")
        return redirect(url_for("auth.change_password"))
    return None


def login_required(view: F) -> F:
    """Redirect to the sign-in page (with ``next``) when nobody is signed in."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.get("user") is None:
            flash(t("login_required"), "info")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a path on this site, else None (no open redirects)."""
    if not target or len(target) > 2000:
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return None
    return target


def _start_session(user_id: int, version: int) -> None:
    session.clear()  # a fresh session: no fixation
    session["uid"] = user_id
    session["sv"] = version
    session["at"] = int(services().now().timestamp())
    session.permanent = True


def _locked(template: str, retry_after: int, **context: Any) -> Any:
    """The page again with the wait in zh/en, 429 and ``Retry-After``."""
    html = render_template(template, error=t("login_locked", wait=_wait_text(retry_after)), **context)
    return html, 429, {"Retry-After": str(retry_after)}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    error = None
    if request.method == "POST":
        if form.validate():
            result = services().accounts.login(form.username.data or "", form.password.data or "",
                                               address=_client_address(), now=services().now())
            if result.principal is not None:
                _start_session(result.principal.id, result.session_version)
                if result.must_change_password:
                    return redirect(url_for("auth.change_password"))
                return redirect(safe_next(request.args.get("next")) or url_for("records.home"))
            if result.retry_after is not None:
                return _locked("login.html", result.retry_after, form=form)
        error = t("login_failed")
    status = 401 if error else 200
    return render_template("login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    user = g.get("user")
    if user is not None:
        services().accounts.logout(user.id, now=services().now())
    session.clear()
    flash(t("logged_out"), "info")
    return redirect(url_for("auth.login"))


_PROBLEM_KEYS = {"too_short": "pw_too_short", "too_long": "pw_too_long", "common": "pw_common",
                 "contains_username": "pw_contains_username", "unchanged": "pw_unchanged"}


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password() -> Any:
    """The signed-in user changes their password (current + new + confirm).
    Every other session of the user ends; this one carries on."""
    form = PasswordForm()
    accounts = services().accounts
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        if not form.validate():
            status = 400
            errors = {name: [t("pw_required")] for name in form.errors}
        elif form.new.data != form.confirm.data:
            status, errors = 400, {"confirm": [t("pw_mismatch")]}
        else:
            try:
                version = accounts.change_password(g.user.username, form.current.data or "", form.new.data or "",
                                                   now=services().now(), address=_client_address())
            except LoginLocked as exc:
                return _locked("account_password.html", exc.retry_after, form=form, errors={},
                               min_length=accounts.policy.min_length)
            except WrongPassword:
                status, errors = 400, {"current": [t("pw_wrong_current")]}
            except PasswordRejected as exc:
                status = 400
                errors = {"new": [t(_PROBLEM_KEYS.get(p.code, "pw_common"), n=accounts.policy.min_length)
                                  for p in exc.problems]}
            else:
                session["sv"] = version
                session["at"] = int(services().now().timestamp())
                flash(t("pw_changed"), "ok")
                return redirect(url_for("records.home"))
    return render_template("account_password.html", form=form, errors=errors, error=None,
                           min_length=accounts.policy.min_length), status
