"""Issue 16, accounts: sign-in throttle and lock-out (shared by every process
through the database), server-side session versions, session lifetime, the
Secure cookie, the change-password page, admin reset and token revocation
across processes. Two ``create_app`` calls on one database stand for two
server processes; the app's CLOCK is the fake clock the locks run on."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from web_support import NOW, PASSWORD, Clock, csrf_from

from engine.settings import Settings
from engine.storage.models import AuditEntry
from web import create_app

FAST = dict(time_cost=1, memory_cost=1024, parallelism=1)


class CountingHasher(PasswordHasher):
    """A real (cheap) argon2 hasher that counts verifications, to show that a
    locked attempt is refused before any password is verified."""

    def __init__(self) -> None:
        super().__init__(**FAST)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 - argon2's name
        self.verified += 1
        return super().verify(hash, password)


def _settings(app: Flask, **changes: object) -> Settings:
    return replace(app.extensions["promoflow"].settings, **changes)


def other_process(app: Flask, clock: Clock, **config: object) -> Flask:
    """A second app ("process") on the same database, with its own caches."""
    return create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                       "PASSWORD_HASHER": PasswordHasher(**FAST), **config}, settings=_settings(app))


def attempt(client: FlaskClient, username: str, password: str, *, lang: str | None = None,
            address: str = "127.0.0.1"):
    page = client.get("/login" + (f"?lang={lang}" if lang else ""), environ_base={"REMOTE_ADDR": address})
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_from(page.text)},
                       environ_base={"REMOTE_ADDR": address})


def audit_actions(app: Flask) -> list[tuple[str, str | None]]:
    with app.extensions["promoflow"].session_factory() as session:
        rows = session.execute(select(AuditEntry.action, AuditEntry.actor).where(
            AuditEntry.action.in_(["login", "login_failed", "login_locked", "logout", "password_changed",
                                   "password_reset", "password_set", "token_locked"])).order_by(AuditEntry.id))
        return [(a, actor) for a, actor in rows]


def test_wrong_passwords_lock_the_account_then_unlock_with_growing_backoff(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    for _ in range(4):
        assert attempt(client, "staff", "wrong-guess").status_code == 401
    locked = attempt(client, "staff", "wrong-guess")  # the 5th failure starts a 15 s lock
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "15"
    assert "15 秒" in locked.text and "登录失败次数过多" in locked.text
    # the right password is refused too while the lock runs, with the time left
    clock.now = NOW + timedelta(seconds=5)
    refused = attempt(client, "staff", PASSWORD, lang="en")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "10"
    assert "Too many failed sign-ins. Try again in 10 s." in refused.text
    assert client.get("/").status_code == 302  # not signed in
    # after the lock the right password works and clears the count
    clock.now = NOW + timedelta(seconds=16)
    assert attempt(client, "staff", PASSWORD).status_code == 302
    assert client.get("/").status_code == 200
    actions = audit_actions(app)
    assert actions.count(("login_failed", "staff")) == 5
    assert actions.count(("login_locked", "staff")) == 1
    assert actions[-1] == ("login", "staff")


def test_backoff_doubles_and_is_capped(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    waits = []
    for _ in range(14):
        response = attempt(client, "manager", "nope-nope")
        if response.status_code == 429:
            waits.append(int(response.headers["Retry-After"]))
            clock.now += timedelta(seconds=waits[-1])  # wait the lock out, then fail again
    assert waits[:5] == [15, 30, 60, 120, 240]
    assert waits[5:] == [480, 960, 1920, 3600, 3600]  # capped at an hour


def test_a_locked_attempt_verifies_no_password(app: Flask,
                                              clock: Clock) -> None:
    hasher = CountingHasher()
    counted = other_process(app, clock, PASSWORD_HASHER=hasher)
    client = counted.test_client()
    for _ in range(5):
        attempt(client, "clerk", "bad-password")
    before = hasher.verified
    for _ in range(20):  # a flood while locked: one indexed read each, no argon2
        assert attempt(client, "clerk", "bad-password").status_code == 429
    assert hasher.verified == before


def test_the_lock_holds_across_two_processes(app: Flask, clock: Clock) -> None:
    first, second = app.test_client(), other_process(app, clock).test_client()
    for _ in range(5):
        attempt(first, "staff2", "not-it-at-all")
    response = attempt(second, "staff2", PASSWORD)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) == 15
    clock.now = NOW + timedelta(seconds=15)
    assert attempt(second, "staff2", PASSWORD).status_code == 302


def test_one_address_trying_many_names_is_locked_but_others_are_not(app: Flask, clock: Clock) -> None:
    client = app.test_client()
    for i in range(19):
        assert attempt(client, f"guess{i}", "whatever-pw", address="10.0.0.9").status_code == 401
    assert attempt(client, "guess19", "whatever-pw", address="10.0.0.9").status_code == 429
    # the right password of a real user from that address waits too …
    refused = attempt(client, "staff", PASSWORD, address="10.0.0.9")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "15"
    # … while the same user from another address signs in
    assert attempt(app.test_client(), "staff", PASSWORD, address="10.0.0.10").status_code == 302


def test_unknown_names_are_throttled_like_real_ones(app: Flask) -> None:
    client = app.test_client()
    codes = [attempt(client, "nobody-here", "x-password").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 401, 429]


def test_logout_invalidates_a_copied_cookie(app: Flask, login) -> None:
    client = login("staff")
    saved = client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", saved)
    assert thief.get("/").status_code == 200  # the copy works while the session lives
    home = client.get("/")
    client.post("/logout", data={"csrf_token": csrf_from(home.text)})
    assert client.get("/").status_code == 302
    thief.set_cookie("session", saved)
    assert thief.get("/").status_code == 302  # …and not after logout
    assert ("logout", "staff") in audit_actions(app)


def test_logout_in_one_process_ends_the_session_in_another(app: Flask, login, clock: Clock) -> None:
    client = login("manager")
    saved = client.get_cookie("session").value
    elsewhere = other_process(app, clock).test_client()
    elsewhere.set_cookie("session", saved)
    assert elsewhere.get("/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/").text)})
    assert elsewhere.get("/").status_code == 302


def _change(client: FlaskClient, current: str, new: str, confirm: str | None = None, lang: str | None = None):
    page = client.get("/account/password" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200
    return client.post("/account/password", data={"current": current, "new": new,
                                                   "confirm": new if confirm is None else confirm,
                                                   "csrf_token": csrf_from(page.text)})


def test_password_change_ends_other_sessions_and_keeps_this_one(app: Flask, login) -> None:
    here, there = login("staff"), login("staff")
    response = _change(here, PASSWORD, "Spring-Tide-42")
    assert response.status_code == 302
    assert here.get("/").status_code == 200  # the session that changed it carries on
    assert there.get("/").status_code == 302  # every other one has ended
    assert attempt(app.test_client(), "staff", PASSWORD).status_code == 401
    assert attempt(app.test_client(), "staff", "Spring-Tide-42").status_code == 302
    assert ("password_changed", "staff") in audit_actions(app)


@pytest.mark.parametrize(("new", "confirm", "zh", "en"), [
    ("short1", None, "密码至少需要 8 个字符", "The password needs at least 8 characters"),
    ("password123", None, "这是常见密码", "This is a common password"),
    ("my-staff-pass", None, "密码不能包含用户名", "The password must not contain the user name"),
    ("Spring-Tide-42", "Spring-Tide-43", "两次输入的新密码不一致", "The two new passwords differ"),
    (PASSWORD, None, "新密码不能与当前密码相同", "The new password must differ from the current one"),
])
def test_change_password_refusals_say_why(app: Flask, login, new: str, confirm: str | None, zh: str,
                                         en: str) -> None:
    client = login("staff")
    refused = _change(client, PASSWORD, new, confirm)
    assert refused.status_code == 400 and zh in refused.text
    refused = _change(client, PASSWORD, new, confirm, lang="en")
    assert refused.status_code == 400 and en in refused.text
    assert attempt(app.test_client(), "staff", PASSWORD).status_code == 302  # unchanged


def test_change_password_needs_the_current_one_and_csrf(app: Flask, login) -> None:
    client = login("staff")
    wrong = _change(client, "not-my-password", "Spring-Tide-42", lang="en")
    assert wrong.status_code == 400 and "The current password is wrong" in wrong.text
    no_csrf = client.post("/account/password", data={"current": PASSWORD, "new": "Spring-Tide-42",
                                                      "confirm": "Spring-Tide-42"})
    assert no_csrf.status_code == 400
    assert attempt(app.test_client(), "staff", PASSWORD).status_code == 302
    assert app.test_client().get("/account/password").status_code == 302  # signed-in users only


def test_wrong_current_passwords_count_toward_the_lock(app: Flask, login) -> None:
    client = login("staff")
    for _ in range(4):
        assert _change(client, "guessing-again", "Spring-Tide-42").status_code == 400
    locked = _change(client, "guessing-again", "Spring-Tide-42")
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "15"


def test_admin_reset_gives_a_one_time_password_that_forces_a_change(app: Flask, login, clock: Clock) -> None:
    before = login("staff")
    accounts = app.extensions["promoflow"].accounts
    one_time = accounts.reset_password("staff", now=NOW, actor="admin")
    assert before.get("/").status_code == 302  # the reset ended the old sessions
    client = app.test_client()
    signed_in = attempt(client, "staff", one_time)
    assert signed_in.status_code == 302 and signed_in.headers["Location"].endswith("/account/password")
    blocked = client.get("/")
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/account/password")
    assert _change(client, one_time, "Autumn-Leaf-77").status_code == 302
    assert client.get("/").status_code == 200
    actions = audit_actions(app)
    assert ("password_reset", "admin") in actions and ("password_changed", "staff") in actions


def test_a_reset_lifts_a_lock_out(app: Flask) -> None:
    client = app.test_client()
    for _ in range(5):
        attempt(client, "staff2", "wrong-wrong")
    one_time = app.extensions["promoflow"].accounts.reset_password("staff2", now=NOW, actor="admin")
    assert attempt(client, "staff2", one_time).status_code == 302


def test_secure_cookie_when_the_public_address_is_https(app: Flask, clock: Clock) -> None:
    plain = attempt(app.test_client(), "staff", PASSWORD)
    assert "Secure" not in plain.headers["Set-Cookie"] and "HttpOnly" in plain.headers["Set-Cookie"]
    https = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                        "PASSWORD_HASHER": PasswordHasher(**FAST)},
                       settings=_settings(app, base_url="https://promo.example.com"))
    secure = attempt(https.test_client(), "staff", PASSWORD)
    assert secure.status_code == 302 and "; Secure" in secure.headers["Set-Cookie"]


def test_a_sign_in_ends_after_the_session_lifetime_however_busy(app: Flask, clock: Clock) -> None:
    short = create_app({"TESTING": True, "MIGRATE": False, "CLOCK": clock,
                        "PASSWORD_HASHER": PasswordHasher(**FAST)},
                       settings=_settings(app, session_lifetime=timedelta(hours=1)))
    client = short.test_client()
    assert attempt(client, "staff", PASSWORD).status_code == 302
    for minutes in (10, 30, 59):
        clock.now = NOW + timedelta(minutes=minutes)
        assert client.get("/").status_code == 200
    clock.now = NOW + timedelta(minutes=61)
    assert client.get("/").status_code == 302
    assert short.permanent_session_lifetime == timedelta(hours=1)


def test_token_revocation_is_seen_by_another_process_within_a_second(app: Flask, clock: Clock,
                                                                     tokens: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {tokens['staff']}"}
    reader = other_process(app, clock).test_client()
    assert reader.get("/api/v1/tasks", headers=headers).status_code == 200  # checked and cached
    app.extensions["promoflow"].accounts.revoke_tokens("staff", now=NOW)
    time.sleep(1.05)
    response = reader.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "invalid_token"


def test_invalid_tokens_from_one_address_get_429_and_valid_ones_still_work(app: Flask,
                                                                          tokens: dict[str, str]) -> None:
    client = app.test_client()
    codes = [client.get("/api/v1/tasks", headers={"Authorization": f"Bearer pf_guess{i}"}).status_code
             for i in range(21)]
    assert codes[:19] == [401] * 19 and codes[19:] == [429, 429]
    locked = client.get("/api/v1/tasks", headers={"Authorization": "Bearer pf_guess"})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) == 15
    assert locked.get_json()["error"]["code"] == "too_many_attempts"
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {tokens['staff']}"}).status_code == 200
    doc = client.get("/api/v1/openapi.json").get_json()
    assert "429" in doc["paths"]["/tasks"]["get"]["responses"]
    assert ("token_locked", None) in audit_actions(app)
