"""``webhook``: POST a payload (values may be templates) through a webhook connector.

The call is an outbox row like a message (idempotency key, retries, dead
letters); the payload's string values render in the Jinja2 sandbox with the
journey's context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.definitions.build import frozen
from engine.definitions.errors import Problem, unknown
from engine.definitions.specs import WebhookSpec
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import OutboxRow, StepFailed, Writes, idempotency_key
from engine.templates import TemplateRenderError, render_string

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor

__all__ = ["STEP", "WebhookStep", "render_data"]


def render_data(data: Mapping[str, Any], ctx: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``data`` with its string values rendered (sandboxed) in ``ctx``.

    Raises:
        StepFailed: a value does not render."""
    try:
        return {k: render_string(v, ctx, template_id=name, part=k) if isinstance(v, str) else v
                for k, v in data.items()}
    except TemplateRenderError as exc:
        raise StepFailed(str(exc)) from None


class WebhookStep(StepType):
    key = "webhook"
    spec_type = WebhookSpec
    label = {"zh": "调用 Webhook", "en": "Call a webhook"}
    help = {"zh": "通过 webhook 连接器把数据推送给外部系统（失败会重试）。",
            "en": "Push data to another system through a webhook connector (retried on failure)."}
    schema = {
        "type": "object",
        "required": ["connector"],
        "additionalProperties": False,
        "properties": {"connector": {"$ref": "common.schema.json#/$defs/ref"}, "payload": {"type": "object"}},
    }

    def build(self, body: Any, site: BuildSite) -> WebhookSpec:
        return WebhookSpec(body["connector"], frozen(body.get("payload", {})))  # type: ignore[arg-type]

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        ctx, p = site.ctx, site.path
        connector = ctx.get("connector", body["connector"])
        if body["connector"] not in ctx.ids("connector"):
            return [Problem(p + ("connector",), "unknown_ref", unknown("connector", body["connector"], ctx.ids("connector")))]
        if connector is not None and connector["channel"] != "webhook":
            return [Problem(p + ("connector",), "channel_mismatch", f"connector `{body['connector']}` is not a webhook connector")]
        return []

    def summary(self, spec: WebhookSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.connector}"

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: WebhookSpec = instr.action
        connector = batch.defs.connectors.get(spec.connector)
        for c in cursors:
            c.go(instr.next)
            if connector is None:
                c.fail(f"unknown connector `{spec.connector}`")
                continue
            rule, j = c.rule, c.journey
            try:
                payload = render_data(spec.payload, batch.context(c), f"{rule.id}.{instr.step_id}")
            except StepFailed as exc:
                c.fail(str(exc))
                continue
            out.outbox.append(OutboxRow(
                connector.channel, connector.id, connector.id, None,
                json.dumps(payload, ensure_ascii=False, default=str), {"data": payload},
                idempotency_key(rule.id, j.subject_type, j.subject_id, j.period_key, instr.step_id), "transactional",
                rule.id, j.id, c.customer_id, None))
        return out


STEP = WebhookStep()
