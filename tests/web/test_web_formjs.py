"""The browser's condition evaluator (static/form.js) agrees with the server's
predicate on the conditions the shipped forms use; run under Node when present."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.conditions.parse import parse_condition
from engine.conditions.predicate import compile_predicate
from web.formbuilder import condition_data

FORM_JS = Path(__file__).resolve().parents[2] / "web" / "static" / "form.js"
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)

CASES = [
    ({"discount_type": "coupon"}, [{"discount_type": "coupon"}, {"discount_type": "gift"}, {}]),
    ({"score": {"lte": 8}}, [{"score": 3}, {"score": 9}, {"score": 8}, {}]),
    ({"score": {"between": [3, 5]}}, [{"score": 3}, {"score": 6}, {}]),
    ({"channel": {"in": ["sms", "email"]}}, [{"channel": "sms"}, {"channel": "store"}, {}]),
    ({"channel": {"not_in": ["sms"]}}, [{"channel": "sms"}, {"channel": "store"}, {}]),
    ({"channel": {"ne": "sms"}}, [{"channel": "sms"}, {"channel": "wecom"}, {}]),
    ({"reason": {"contains": "price"}}, [{"reason": ["price", "service"]}, {"reason": ["service"]}, {}]),
    ({"reason": {"not_contains": "price"}}, [{"reason": ["price"]}, {"reason": []}, {}]),
    ({"note": {"is_empty": True}}, [{"note": ""}, {"note": "x"}, {}]),
    ({"contact_ok": True}, [{"contact_ok": True}, {"contact_ok": False}]),
    ({"start": {"gt": "2025-03-01"}}, [{"start": "2025-03-02"}, {"start": "2025-02-28"}, {}]),
    ({"start": {"within": "7d"}}, [{"start": "2025-02-27"}, {"start": "2025-02-01"}]),
    ({"all": [{"score": {"gte": 7}}, {"not": {"channel": "sms"}}]},
     [{"score": 7, "channel": "email"}, {"score": 7, "channel": "sms"}, {"score": 1}]),
    ({"any": [{"score": 10}, {"channel": "sms"}]}, [{"score": 10}, {"channel": "sms"}, {"score": 1}]),
]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_browser_evaluator_matches_the_server() -> None:
    checks = []
    expected = []
    for raw, rows in CASES:
        cond, problems = parse_condition(raw)
        assert not problems, problems
        predicate = compile_predicate(cond)
        for row in rows:
            checks.append({"cond": condition_data(cond), "row": row})
            expected.append(predicate(row, NOW))
    script = (
        "global.window = {}; global.document = {addEventListener() {}};\n"
        f"require({json.dumps(str(FORM_JS))});\n"
        f"const checks = {json.dumps(checks)};\n"
        f"const now = Date.parse({json.dumps(NOW.isoformat())});\n"
        "console.log(JSON.stringify(checks.map(c => window.promoflowCondition(c.cond, c.row, now))));\n"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True)
    got = json.loads(out.stdout)
    mismatches = [(c, e, g) for c, e, g in zip(checks, expected, got) if e != g]
    assert not mismatches
