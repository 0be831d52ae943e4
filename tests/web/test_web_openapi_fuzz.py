"""schemathesis over the whole API, in process, as an admin and as staff:
every operation of /api/v1/openapi.json (each shipped form's included) gets
generated valid and invalid requests; none may answer 5xx, an answer must
match its documented status, content type and schema, and invalid data must
be refused. A few examples per operation keep it to a minute or two."""

from __future__ import annotations

import os

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.parametrize("db_url", ["sqlite"], indirect=True), pytest.mark.slow]

#: Examples per operation, per generation mode, per caller.
EXAMPLES = int(os.environ.get("PROMOFLOW_FUZZ_EXAMPLES", "5"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


def _fuzz(app: Flask, token: str, mode: GenerationMode) -> list[str]:
    """Run every operation with ``EXAMPLES`` generated cases; the failures, one line each."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/healthz", "/readyz"):  # outside /api/v1: tests/ops covers them
            continue
        strategy = operation.as_strategy(generation_mode=mode, headers={"Authorization": f"Bearer {token}"})

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # one line per operation; the message names the check and the request
            first = str(exc).strip().splitlines()
            failures.append(f"{mode.value} {operation.label}: {' | '.join(first[:12])}")
    return failures


@pytest.mark.timeout(300)
def test_the_api_keeps_its_document_for_admin_and_staff(app: Flask, tokens: dict[str, str]) -> None:
    failures = []
    for who in ("admin", "staff"):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += [f"{who} {line}" for line in _fuzz(app, tokens[who], mode)]
    assert not failures, f"{len(failures)} operations break the document:\n" + "\n".join(failures)
