"""The broken-definition corpus: each file in ``cases/`` holds exactly one
problem and declares, on its first line, the one error it must produce:

    # expect: LINE:COL: message

(JSON has no comments: ``NNN_name.json`` declares it in ``NNN_name.expect``.)
The loader must report exactly that error, at exactly that place, and nothing
else; a new check or a changed message shows up here as a failing case.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.definitions.loader import load_texts

CASES = Path(__file__).parent / "cases"
CASE_FILES = sorted(p for p in CASES.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
PREFIX = "# expect: "


def expectation(path: Path) -> str:
    if path.suffix == ".json":
        return path.with_suffix(".expect").read_text(encoding="utf-8").strip()
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(PREFIX), f"{path.name}: the first line must be `{PREFIX}LINE:COL: message`"
    return first[len(PREFIX):].strip()


def test_the_corpus_is_large_and_numbered() -> None:
    assert len(CASE_FILES) >= 45
    numbers = [p.name.split("_", 1)[0] for p in CASE_FILES]
    assert all(n.isdigit() and len(n) == 3 for n in numbers)
    assert len(set(numbers)) == len(numbers)
    assert any(p.suffix == ".json" for p in CASE_FILES)
    for json_case in (p for p in CASE_FILES if p.suffix == ".json"):
        assert json_case.with_suffix(".expect").is_file()


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    name = f"cases/{path.name}"
    result = load_texts([(name, path.read_text(encoding="utf-8"))])
    assert [str(e) for e in result.errors] == [f"{name}:{expectation(path)}"]
    assert not result.ok
    assert result.definitions.documents == ()


THREE_PROBLEMS = """\
kind: role
id: marketing_manager
title: 市场经理
---
kind: form
id: activity_request
title: 促销活动申请
fields:
  - {key: name, label: 活动名称, type: text, max_lenght: 60}
  - {key: budget, label: 预算, type: money}
---
kind: connector
id: sms_demo
type: memory
channel: sms
---
kind: template
id: winback_sms
channels: [sms]
body: "{{ customer.name }}，送您20元回归券"
---
kind: rule
id: winback_90d
title: 90天未购挽回
trigger: {schedule: "0 10 * * *", timezone: Asia/Shanghai}
audience:
  customer: {last_purchase_at: {older_than: 90d}}
steps:
  - send: {channel: sms, template: winback_sms}
---
kind: workflow
id: activity_approval
title: 活动审批
form: activity_request
steps:
  - id: manager_review
    approval: {role: marketing_manger}
"""


def test_every_problem_of_a_file_comes_out_at_once_sorted_by_line() -> None:
    result = load_texts([("broken.yaml", THREE_PROBLEMS)])
    assert [str(e) for e in result.errors] == [
        "broken.yaml:9:42: unknown key `max_lenght`; did you mean `max_length`?",
        "broken.yaml:29:21: marketing message on sms without consent: add `consent.sms: true` to "
        "`audience.customer` (or an enclosing `if`), or mark the rule or template `class: transactional`",
        "broken.yaml:37:22: unknown role `marketing_manger`; did you mean `marketing_manager`?",
    ]


def test_problems_of_several_files_come_out_together() -> None:
    # cases whose ids do not collide: loaded together, each still reports its own error
    chosen = [p for p in CASE_FILES if p.name.split("_", 1)[0] in ("001", "002", "031", "035", "052", "064", "069")]
    assert len(chosen) == 7
    files = [(f"cases/{p.name}", p.read_text(encoding="utf-8")) for p in reversed(chosen)]
    result = load_texts(files)
    assert [str(e) for e in result.errors] == [f"cases/{p.name}:{expectation(p)}" for p in chosen]


def test_a_schema_problem_does_not_hide_a_reference_problem_in_the_same_definition() -> None:
    text = THREE_PROBLEMS.replace("title: 活动审批\n", "title: 活动审批\ndescripton: 活动审批流程\n")
    assert text != THREE_PROBLEMS
    messages = [str(e) for e in load_texts([("broken.yaml", text)]).errors]
    assert messages[-2:] == [
        "broken.yaml:34:1: unknown key `descripton`; did you mean `description`?",
        "broken.yaml:38:22: unknown role `marketing_manger`; did you mean `marketing_manager`?",
    ]
