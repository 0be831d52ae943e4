"""Signed, expiring survey links.

A survey link must name one customer and one campaign without a login, and
must not be guessable or editable: the token is ``<payload>.<signature>``,
URL-safe Base64 without padding, payload = JSON ``{c: customer id, k:
campaign, m: message id or null, f: form id or null, e: expiry (Unix s)}``,
signature = HMAC-SHA256 over the payload with a key *derived* from the
instance secret (so a survey token can never pass as a session cookie or an
unsubscribe token, which use the same secret for other purposes).

The engine reads no clock: ``now`` is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from .signed_tokens import BadToken, pack, unpack

__all__ = ["ExpiredSurveyLink", "InvalidSurveyLink", "SurveyLink", "sign_survey", "survey_key", "survey_url",
           "verify_survey"]

_PURPOSE = b"promoflow.survey.v1"


class InvalidSurveyLink(ValueError):
    """Malformed or tampered with (the page answers 403)."""


class ExpiredSurveyLink(InvalidSurveyLink):
    """Genuine but past its expiry (the page answers 410)."""


@dataclass(frozen=True)
class SurveyLink:
    customer_id: int
    campaign: str
    message_id: int | None
    form_id: str | None
    expires: int


def survey_key(secret: str) -> bytes:
    """The signing key for survey links, derived from the instance secret."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def sign_survey(secret: str, *, customer_id: int, campaign: str, expires: datetime,
                message_id: int | None = None, form_id: str | None = None) -> str:
    """A token for ``customer_id``'s answer on ``campaign`` valid until ``expires``."""
    payload = json.dumps({"c": int(customer_id), "k": str(campaign), "m": message_id, "f": form_id,
                          "e": int(expires.timestamp())}, separators=(",", ":"), ensure_ascii=False).encode()
    return pack(payload, survey_key(secret))


def verify_survey(token: str, secret: str, now: datetime) -> SurveyLink:
    """The link a valid token stands for.

    Raises:
        InvalidSurveyLink: malformed or wrong signature.
        ExpiredSurveyLink: the signature holds but ``now`` is past the expiry.
    """
    try:
        payload = unpack(token, survey_key(secret))
    except BadToken as exc:
        raise InvalidSurveyLink(str(exc)) from None
    try:
        data = json.loads(payload)
        link = SurveyLink(int(data["c"]), str(data["k"]), None if data.get("m") is None else int(data["m"]),
                          None if data.get("f") is None else str(data["f"]), int(data["e"]))
    except (ValueError, KeyError, TypeError):
        raise InvalidSurveyLink("malformed payload") from None
    if int(now.timestamp()) >= link.expires:
        raise ExpiredSurveyLink("survey link expired")
    return link


def survey_url(base_url: str, secret: str, *, customer_id: int, campaign: str, now: datetime,
               valid_for: timedelta = timedelta(days=30), message_id: int | None = None,
               form_id: str | None = None) -> str:
    """The full survey link for a message: ``<base_url>/survey/<token>`` (the
    web app's route), valid for ``valid_for`` from ``now``. What the
    automation's template context should offer as ``survey_url``."""
    token = sign_survey(secret, customer_id=customer_id, campaign=campaign, expires=now + valid_for,
                        message_id=message_id, form_id=form_id)
    return f"{base_url.rstrip('/')}/survey/{token}"
