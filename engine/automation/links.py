"""The links a rule's message offers its customer: ``unsubscribe_url`` and
``survey_url``, signed so that nobody can opt another customer out or answer
for them by editing a number (see :mod:`engine.feedback.unsubscribe_links`
and :mod:`engine.feedback.links`; the web app serves ``/u/<token>`` and
``/survey/<token>``).

Without an instance secret in the policy (a hand-built policy in a test, a
dry run) there is nothing to sign with: the links are empty rather than
guessable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.definitions.specs import RuleSpec
from engine.feedback.links import survey_url
from engine.feedback.unsubscribe_links import ALL_CHANNELS, unsubscribe_path

from .policy import Policy

#: How long an unsubscribe link keeps working: people unsubscribe from old mail too.
UNSUBSCRIBE_VALID = timedelta(days=365)
#: How long a survey link keeps working.
SURVEY_VALID = timedelta(days=30)


def unsubscribe_link(policy: Policy, subject_type: str, subject_id: int, now: datetime) -> str:
    """Opts the customer out of every marketing channel (the message's reader
    may not know which channel a rule uses next)."""
    if not policy.link_secret or subject_type != "customer":
        return ""
    return policy.base_url.rstrip("/") + unsubscribe_path(subject_id, ALL_CHANNELS, policy.link_secret,
                                                          now + UNSUBSCRIBE_VALID)


def survey_link(policy: Policy, rule: RuleSpec, subject_type: str, subject_id: int, now: datetime) -> str:
    """The customer's answer on the rule's campaign (the rule id when it names none)."""
    if not policy.link_secret or subject_type != "customer":
        return ""
    return survey_url(policy.base_url, policy.link_secret, customer_id=int(subject_id),
                      campaign=rule.campaign or rule.id, now=now, valid_for=SURVEY_VALID)
