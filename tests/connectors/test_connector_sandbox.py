"""The built-in sandbox connector, found through the registry in-process
(``promoflow.connectors`` entry point ``sandbox``, also in ``BUILTIN`` for a
checkout that was not reinstalled)."""

from __future__ import annotations

from pathlib import Path

from connectors.registry import BUILTIN, connector_types, load_connector, resolve_type
from connectors.sandbox import FILE_NAME, SandboxConnector, read_inbox
from engine.definitions.loader import load_paths
from engine.definitions.specs import ConnectorSpec
from engine.ports import Outcome, OutgoingMessage


def test_the_registry_builds_a_sandbox_without_secrets_and_it_files_every_channel(tmp_path: Path) -> None:
    assert resolve_type("sandbox") is SandboxConnector and "sandbox" in BUILTIN
    assert connector_types()["sandbox"].channel is None  # any channel
    spec = ConnectorSpec(id="box", type="sandbox", channel="sms", settings={"folder": str(tmp_path / "box")})
    box = load_connector(spec, env={})
    messages = [
        OutgoingMessage(id="1", channel="sms", recipient="+8613800000001", body="春季新品 https://p.cn/c/Ab12Cd34Ef"),
        OutgoingMessage(id="2", channel="email", recipient="li@example.com", subject="春季新品", body="正文",
                        html="<p>正文</p>", options={"customer_id": 7}),
        OutgoingMessage(id="3", channel="wecom", recipient="zhangsan", body="审批通知",
                        params={"url": "https://p.cn/tasks/1"}),
    ]
    results = box.send_batch(messages)
    assert [(r.message_id, r.outcome) for r in results] == [(m.id, Outcome.ACCEPTED) for m in messages]
    assert all(r.provider_id == f"sandbox-{r.message_id}-1" for r in results)
    inbox = read_inbox(tmp_path / "box")
    assert [m.message_id for m in inbox] == ["3", "2", "1"]  # newest first
    assert inbox[1].subject == "春季新品" and inbox[1].customer_id == 7 and inbox[1].html == "<p>正文</p>"
    assert inbox[0].url == "https://p.cn/tasks/1"
    assert [m.message_id for m in read_inbox(tmp_path / "box", channel="sms")] == ["1"]
    assert [m.message_id for m in read_inbox(tmp_path / "box", recipient="zhangsan")] == ["3"]


def test_a_torn_line_is_skipped_and_the_limit_keeps_the_newest(tmp_path: Path) -> None:
    box = SandboxConnector(ConnectorSpec(id="box", type="sandbox", channel="sms",
                                         settings={"folder": str(tmp_path)}), {})
    box.send_batch([OutgoingMessage(id=str(i), channel="sms", recipient="13800000001", body=f"m{i}")
                    for i in range(5)])
    with open(tmp_path / FILE_NAME, "a", encoding="utf-8") as stream:
        stream.write('{"provider_id": "torn", "mess')
    assert [m.body for m in read_inbox(tmp_path, limit=2)] == ["m4", "m3"]
    assert read_inbox(tmp_path / "nothing-here") == []


def test_a_definition_may_name_the_sandbox_type(tmp_path: Path) -> None:
    (tmp_path / "box.yaml").write_text("kind: connector\nid: sms_box\ntype: sandbox\nchannel: sms\ndefault: true\n",
                                       encoding="utf-8")
    result = load_paths([tmp_path], relative_to=tmp_path)
    assert not result.errors
    assert result.definitions.connectors["sms_box"].type == "sandbox"
