"""``send``: a message from a template, to the customer or to staff.

Checks, in order: consent (marketing messages to customers need
``consent.<channel>``; skipped and counted), an address (skipped), quiet hours
in the customer's zone (else the rule's) and ``on: workdays`` (the journey
waits: deferred, never dropped), and frequency caps (deferred until the window
has room, or skipped when the policy says so). A journey in the rule's
control group gets no message; a variant may swap the template.

The SQL form (a scheduled rule's first segment, engine/automation/setentry.py)
takes SMS to the customer whose template is plain text with ``{{ name.attr }}``
substitutions of customer columns, the coupon, the rule or the journey.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from engine.conditions.ast import All, Compare, Condition
from engine.definitions.build import send_spec
from engine.definitions.catalog import CONSENT_CHANNELS
from engine.definitions.errors import Problem
from engine.definitions.specs import SendSpec
from engine.outbox import OutboxError, message_payload, pick_connector, provider_template_code
from engine.steps.registry import BuildSite, CheckSite, StepType
from engine.steps.runtime import OutboxRow, StepFailed, Writes, idempotency_key
from engine.storage.times import from_db_time, to_db_time
from engine.templates import Renderer, TemplateRenderError, references, text_pieces

if TYPE_CHECKING:
    from engine.automation.program import Instruction
    from engine.steps.runtime import Batch, Cursor
    from engine.steps.sql import SqlPlanner

__all__ = ["STEP", "SendStep"]

_RECIPIENT = {"$ref": "common.schema.json#/$defs/recipient"}


def renderer_for(batch: Batch, template: Any, channel: str) -> Renderer:
    """The compiled renderer of a template for a channel, once per batch.

    Raises:
        TemplateRenderError: the template does not compile (not cached: every journey fails alike)."""
    key = ("renderer", template.id, channel)
    found = batch.cache.get(key)
    if found is None:
        found = batch.cache[key] = Renderer(template, channel)
    return found


def consented(audience: Condition | None, channel: str) -> bool:
    """Whether every customer of ``audience`` has ``consent.<channel>`` (it is
    one of the audience's top-level ``all`` tests): entry and send are one
    transaction, so the send need not look again."""
    items = audience.items if isinstance(audience, All) else (audience,)
    return any(isinstance(c, Compare) and c.field == f"consent.{channel}" and c.op == "eq" and c.value is True
               for c in items)


class SendStep(StepType):
    key = "send"
    spec_type = SendSpec
    label = {"zh": "发送消息", "en": "Send a message"}
    help = {"zh": "用模板给客户（或员工）发短信、邮件或企业微信消息；营销消息需客户同意，静默时段和频次上限会顺延。",
            "en": "Send an SMS, email or WeCom message from a template to the customer (or staff); marketing "
                  "messages need consent, quiet hours and frequency caps defer them."}
    emits = "message.sent"
    schema = {
        "type": "object",
        "required": ["channel", "template"],
        "additionalProperties": False,
        "properties": {
            "channel": {"$ref": "common.schema.json#/$defs/channel"},
            "template": {"$ref": "common.schema.json#/$defs/ref"},
            "to": _RECIPIENT,
            "connector": {"$ref": "common.schema.json#/$defs/ref"},
            "on": {"type": "string", "enum": ["any_day", "workdays"]},
        },
    }

    def build(self, body: Any, site: BuildSite) -> SendSpec:
        return send_spec(body)

    def check(self, body: Any, site: CheckSite) -> list[Problem]:
        from engine.conditions.check import required_true_fields
        from engine.definitions.check_flows import check_send

        ctx, p = site.ctx, site.path
        problems = check_send(ctx, body, p, None)
        template = ctx.get("template", body["template"])
        cls = (template or {}).get("class", site.rule.get("class", "marketing"))
        if body["channel"] in CONSENT_CHANNELS and cls == "marketing" and body.get("to") in (None, "customer"):
            required = required_true_fields(site.audience, ctx.segment_conditions) if site.audience is not None \
                else set()
            for _, guard_path in site.guards:
                if site.conditions.get(guard_path) is not None:
                    required |= required_true_fields(site.conditions[guard_path], ctx.segment_conditions)
            if f"consent.{body['channel']}" not in required:
                problems.append(Problem(p + ("channel",), "consent",
                                        f"marketing message on {body['channel']} without consent: add "
                                        f"`consent.{body['channel']}: true` to `audience.customer` (or an enclosing "
                                        "`if`), or mark the rule or template `class: transactional`"))
        return problems

    def summary(self, spec: SendSpec, lang: str) -> str:
        return f"{self.label[lang]}: {spec.channel} · {spec.template}"

    # -- runtime ---------------------------------------------------------------------

    def run(self, batch: Batch, instr: Instruction, cursors: list[Cursor]) -> Writes:
        out = Writes()
        spec: SendSpec = instr.action
        for c in cursors:
            if c.held_out:
                c.go(instr.next)
                continue
            try:
                deferred = self._one(batch, out, instr, spec, c)
            except StepFailed as exc:
                c.fail(str(exc))
                continue
            if deferred is None:
                c.go(instr.next)
            else:
                c.resume_at(deferred)
        return out

    def _one(self, batch: Batch, out: Writes, instr: Instruction, spec: SendSpec, c: Cursor) -> datetime | None:
        """Queue the message(s) of one journey; the time to retry when deferred."""
        from engine.automation.timing import (
            end_of_quiet,
            in_quiet_hours,
            next_workday_time,
        )

        rule, row, counters, now, policy = c.rule, c.row, c.counters, batch.now, batch.policy
        template_id = c.arm.template(spec.template) if c.arm is not None else spec.template
        template = batch.defs.templates.get(template_id)
        if template is None:
            raise StepFailed(f"unknown template `{template_id}`")
        marketing = "marketing" in (rule.delivery_class, template.delivery_class)
        dclass = "marketing" if marketing else "transactional"
        targets = batch.recipients(spec.to, spec.channel, row)
        customer_id = c.customer_id
        to_customer = any(is_customer for _, is_customer in targets) and customer_id is not None
        if to_customer and marketing and not row.get("consent", {}).get(spec.channel, False):
            counters.skipped_consent += 1
            return None
        targets = [(a, is_customer) for a, is_customer in targets if a]
        if not targets:
            counters.skipped_other += 1
            return None
        tz = c.tz
        if rule.quiet_hours and in_quiet_hours(now, rule.quiet_hours, tz):
            counters.deferred_quiet += 1
            return end_of_quiet(now, rule.quiet_hours, tz)
        if spec.on == "workdays":
            moved = next_workday_time(now, policy.calendar, tz)
            if moved != now:
                counters.deferred_quiet += 1
                return moved
        cap_keys: list[tuple[int, str]] = []
        if customer_id is not None and any(is_customer for _, is_customer in targets):
            for cap in policy.caps:
                if cap.delivery_class != dclass:
                    continue
                key = (customer_id, f"{dclass}:{spec.channel}")
                window_start = to_db_time(now - cap.per)
                times = [t for t in batch.recent.get(key, []) if t >= window_start]
                if len(times) >= cap.limit:
                    if policy.cap_action == "skip":
                        counters.skipped_cap += 1
                        return None
                    counters.deferred_cap += 1
                    free_at = from_db_time(sorted(times)[len(times) - cap.limit]) + cap.per + timedelta(seconds=1)
                    return max(free_at, now + timedelta(minutes=1))
                cap_keys.append(key)
        try:
            connector = pick_connector(batch.defs, spec.channel, spec.connector)
            message = renderer_for(batch, template, spec.channel)(batch.context(c))
        except (OutboxError, TemplateRenderError) as exc:
            raise StepFailed(str(exc)) from None
        payload = message_payload(template.id, message, connector, template)
        j = c.journey
        base_key = idempotency_key(rule.id, j.subject_type, j.subject_id, j.period_key, instr.step_id)
        subject = (message.subject or None) and message.subject[:255]
        for n, (address, _) in enumerate(targets):
            out.outbox.append(OutboxRow(spec.channel, connector.id, str(address), subject, message.body, payload,
                                        base_key if n == 0 else f"{base_key}:{n}", dclass, rule.id, j.id,
                                        customer_id, template.id))
            counters.sent += 1
        for key in cap_keys:
            batch.recent.setdefault(key, []).append(batch.db_now)
        batch.event(out, "message.sent", c, {"rule_id": rule.id, "template": template.id, "channel": spec.channel})
        return None

    # -- SQL form --------------------------------------------------------------------

    def sql_form(self, planner: SqlPlanner, instr: Instruction) -> Any:
        from engine.steps.sql import NoSql

        spec: SendSpec = instr.action
        if spec.to is not None and spec.to.kind != "customer":
            return NoSql("a send to staff")
        if spec.channel != "sms":
            return NoSql(f"a send on {spec.channel} (the SQL path sends SMS)")
        if spec.on == "workdays":
            return NoSql("a send `on: workdays`")
        if "message.sent" in planner.listened:
            return NoSql("a rule listens to `message.sent`")
        for arm in planner.message_arms():
            made = self._sql_send(planner, instr, spec, arm)
            if isinstance(made, NoSql):
                return made
            planner.add_send(arm, made)
        return None

    def _sql_send(self, planner: SqlPlanner, instr: Instruction, spec: SendSpec, arm: Any) -> Any:
        """The :class:`engine.storage.entry_sql.SetSend` of this send in ``arm``'s segment, or why not."""
        from engine.steps.sql import CUSTOMER_COLUMNS, TEXT_COLUMNS, NoSql
        from engine.storage.entry_sql import Piece, SetSend

        rule, defs = planner.rule, planner.defs
        template_id = arm.template(spec.template) if arm is not None else spec.template
        template = defs.templates.get(template_id)
        if template is None:
            return NoSql(f"unknown template `{template_id}`")
        try:
            connector = pick_connector(defs, spec.channel, spec.connector)
            renderer = Renderer(template, spec.channel)
            refs = references(renderer.sources())
        except (OutboxError, TemplateRenderError) as exc:
            return NoSql(str(exc))
        coupon = planner.coupon_in_scope(arm)
        top_level = {"customer", "coupon", "rule", "journey", "unsubscribe_url", "survey_url", "base_url"}
        sms_params = set(renderer.params)
        top = set(refs) | (sms_params & top_level)
        if not top <= top_level or ("coupon" in top and coupon is None):
            return NoSql(f"template `{template.id}` reads more than the customer, coupon, rule and journey")
        attrs = refs.get("customer", frozenset())
        if attrs is None:
            return NoSql(f"template `{template.id}` reads the whole customer")
        if sms_params:
            top.add("customer")
            if coupon is not None:
                top.add("coupon")
        attrs = frozenset(attrs) | (sms_params & CUSTOMER_COLUMNS)
        pieces = text_pieces(template.body)
        if pieces is None:
            return NoSql(f"template `{template.id}` is more than text and {{{{ name.attr }}}}")
        coupon_ctx: dict[str, Any] = dict(coupon.context) if coupon is not None else {}
        body: list[Piece] = []
        uses_code = False
        for literal, name, attr in pieces:
            if name is None:
                body.append(Piece("text", literal))
            elif name == "customer" and attr in TEXT_COLUMNS:
                body.append(Piece("customer", str(attr)))
            elif name == "coupon" and coupon is not None and attr == "code":
                body.append(Piece("code"))
                uses_code = True
            elif name == "coupon" and coupon is not None and attr in coupon_ctx:
                body.append(Piece("text", str(coupon_ctx[attr])))
            elif name == "rule" and attr in ("id", "title"):
                body.append(Piece("text", str(rule.id if attr == "id" else rule.title)))
            elif name == "journey" and attr == "id":
                body.append(Piece("journey"))
            elif name == "journey" and attr == "period":
                body.append(Piece("text", planner.key))
            else:
                return NoSql(f"template `{template.id}` prints `{name}.{attr}`, which the SQL path does not have")
        # The rendered body is stripped: only ends that are not fixed text need it in SQL.
        left = not (body and body[0].kind == "text" and body[0].value[:1].strip())
        right = not (body and body[-1].kind == "text" and body[-1].value[-1:].strip())
        strip = {(True, True): "trim", (True, False): "ltrim", (False, True): "rtrim", (False, False): ""}[(left, right)]
        params: list[tuple[str, tuple[Piece, ...]]] = []
        for name in renderer.params:
            if name in top or name == "sign_name":
                return NoSql(f"SMS parameter `{name}` of template `{template.id}`")
            alternatives: list[Piece] = []
            if name in attrs:
                if name not in TEXT_COLUMNS:
                    return NoSql(f"SMS parameter `{name}` of template `{template.id}`")
                alternatives.append(Piece("customer", name))
            if coupon is not None:
                if name == "code":
                    alternatives.append(Piece("code"))
                    uses_code = True
                elif coupon_ctx.get(name) is not None:
                    alternatives.append(Piece("text", str(coupon_ctx[name])))
            params.append((name, tuple(alternatives)))
        sms = template.sms
        params_const = {"sign_name": sms.sign_name} if sms is not None and sms.sign_name else {}
        if sms is None:
            params = []
        payload: dict[str, Any] = {"template": template.id, "connector_type": connector.type}
        code = provider_template_code(template, connector)
        if code:
            payload["template_code"] = code
        dclass = "marketing" if "marketing" in (rule.delivery_class, template.delivery_class) else "transactional"
        planner.count_send(arm, dclass, spec.channel)
        key_prefix, key_suffix = idempotency_key(rule.id, "customer", "\x00", planner.key, instr.step_id).split("\x00")
        return SetSend(step_id=instr.step_id, channel=spec.channel, connector=connector.id,
                       template_id=template.id, delivery_class=dclass,
                       needs_consent=dclass == "marketing" and not consented(rule.audience, spec.channel),
                       body=tuple(body), strip=strip, params=tuple(params), payload=payload,
                       params_const=params_const,
                       coupon_pool=coupon.pool_id if uses_code and coupon is not None else None,
                       key_prefix=key_prefix, key_suffix=key_suffix)


STEP = SendStep()
