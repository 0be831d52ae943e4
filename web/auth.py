"""Sign in and out with a user name and password (argon2), kept in Flask's
signed session cookie; ``login_required`` for the HTML pages."""

from __future__ import annotations

import functools
from collections.abc import Callable
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

from . import services
from .i18n import t

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])


class LoginForm(FlaskForm):
    username = StringField(validators=[DataRequired(), Length(max=128)])
    password = PasswordField(validators=[DataRequired(), Length(max=1024)])


def load_user() -> None:
    """Before-request hook: ``g.user`` is the signed-in, active user or None."""
    g.user = None
    uid = session.get("uid")
    if isinstance(uid, int):
        g.user = services().accounts.get(uid)
        if g.user is None:
            session.clear()


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


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    error = None
    if request.method == "POST":
        if form.validate():
            user = services().accounts.authenticate(form.username.data or "", form.password.data or "")
            if user is not None:
                session.clear()  # a fresh session: no fixation
                session["uid"] = user.id
                session.permanent = True
                return redirect(safe_next(request.args.get("next")) or url_for("records.home"))
        error = t("login_failed")
    status = 401 if error else 200
    return render_template("login.html", form=form, error=error), status


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    flash(t("logged_out"), "info")
    return redirect(url_for("auth.login"))
