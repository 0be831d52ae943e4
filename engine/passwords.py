"""The password policy: long enough, not a common password, not the user name.

Checked when a password is set through a door a person uses (``promoflow
users add``, the change-password page and CLI, an admin reset); the reasons
come back as codes, so the web layer shows them in zh/en and the CLI in
English. The common-password list is a small data file shipped with the
engine (``engine/data/common_passwords.txt``, made by
``scripts/make_common_passwords.py``), read once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

COMMON_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"
#: The longest password accepted (the sign-in form's limit too): argon2 hashes
#: any length, but a megabyte "password" is only a way to burn CPU.
MAX_LENGTH = 1024


@dataclass(frozen=True)
class PasswordProblem:
    """One reason a password is refused: ``code`` for translation, ``message`` in English."""

    code: str  # too_short | too_long | common | contains_username | unchanged (a change to the same)
    message: str


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list, lower-cased."""
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class PasswordPolicy:
    """What a new password must satisfy. ``min_length`` comes from the settings."""

    min_length: int = 8

    def problems(self, password: str, username: str) -> list[PasswordProblem]:
        """Every reason ``password`` is refused for ``username`` (empty: accepted)."""
        found: list[PasswordProblem] = []
        if len(password) < self.min_length:
            found.append(PasswordProblem("too_short", f"the password must have at least {self.min_length} "
                                                      f"characters (it has {len(password)})"))
        if len(password) > MAX_LENGTH:
            found.append(PasswordProblem("too_long", f"the password must have at most {MAX_LENGTH} characters"))
        lowered = password.strip().lower()
        if lowered in common_passwords():
            found.append(PasswordProblem("common", "the password is on the list of common passwords; "
                                                   "choose one that is harder to guess"))
        name = username.strip().lower()
        if name and (lowered == name or (len(name) >= 3 and name in lowered)):
            found.append(PasswordProblem("contains_username", "the password must not contain the user name"))
        return found


__all__ = ["COMMON_FILE", "MAX_LENGTH", "PasswordPolicy", "PasswordProblem", "common_passwords"]
