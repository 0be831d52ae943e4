"""The links a rule puts in its messages work when the customer follows them:
the shipped post-campaign NPS rule sends a signed survey link by SMS and, three
days later, an e-mail with a signed unsubscribe link; both open on the web app
(the settings' base_url, the instance secret)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from engine.automation import tick
from engine.automation.configure import build_policy, policy_from_settings
from engine.automation.runner import run_rule
from engine.storage.database import transaction
from engine.storage.models import Consent, CustomerTag, OutboxMessage

from .support import NOW, add_customer, csrf_from

BASE = "http://127.0.0.1:8000"  # the shipped default base_url


def _buyer(services) -> None:
    with transaction(services.session_factory) as s:
        add_customer(s, 1, now=NOW, last_order=NOW - timedelta(days=1), consents={"sms": True, "email": True})
        s.add(CustomerTag(customer_id=1, tag="campaign_buyer"))


def _bodies(services, channel: str) -> list[str]:
    with services.session_factory() as s:
        return [b for (b,) in s.execute(select(OutboxMessage.body).where(OutboxMessage.channel == channel)
                                        .order_by(OutboxMessage.id))]


def _path(body: str, route: str) -> str:
    match = re.search(re.escape(BASE) + r"(/" + route + r"/[A-Za-z0-9_\-.]+)", body)
    assert match, body
    return match.group(1)


def _run(services, policy=None) -> tuple:
    definitions = services.registry.current()
    policy = policy or policy_from_settings(definitions, services.settings, services.registry)
    assert run_rule(services.session_factory, "post_campaign_nps", now=NOW, definitions=definitions,
                    policy=policy).entered == 1
    return definitions, policy


def test_the_sms_survey_link_opens_the_survey(app, services) -> None:
    assert services.settings.base_url == BASE
    _buyer(services)
    _run(services)
    [sms] = _bodies(services, "sms")
    survey = _path(sms, "survey")
    client = app.test_client()
    page = client.get(survey)
    assert page.status_code == 200 and 'name="score"' in page.text
    answered = client.post(survey, data={"csrf_token": csrf_from(page.text), "score": "9"})
    assert answered.status_code == 200


def test_the_reminder_emails_unsubscribe_link_opts_out(app, services) -> None:
    _buyer(services)
    definitions, policy = _run(services)
    # no answer in three days: the rule's e-mail step, with its unsubscribe link
    tick(services.session_factory, now=NOW + timedelta(days=3, hours=1), definitions=definitions, policy=policy,
         deliver=False)
    [email] = _bodies(services, "email")
    link = _path(email, "u")
    client = app.test_client()
    assert client.get(link).status_code == 200
    assert client.post(link).status_code == 200
    with services.session_factory() as s:
        consents = dict(s.execute(select(Consent.channel, Consent.granted).where(Consent.customer_id == 1)).all())
    assert consents == {"sms": False, "email": False, "wecom": False}


def test_without_the_instance_secret_no_guessable_link_is_made(services) -> None:
    _buyer(services)
    definitions = services.registry.current()
    _run(services, build_policy(definitions, base_url=BASE,
                                version_of=lambda rule_id: services.registry.version_of("rule", rule_id)))
    [sms] = _bodies(services, "sms")
    assert BASE not in sms and "/u/" not in sms and "/s/" not in sms
