"""Checks of segments, templates and connectors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from engine.conditions.check import check_condition, referenced_segments
from engine.conditions.customer_fields import CUSTOMER_FIELDS
from engine.conditions.parse import parse_condition

from .context import Context, Problems
from .errors import Problem, unknown
from .source import RawDefinition

_SECRET_WORDS = ("secret", "password", "token", "api_key", "access_key", "apikey", "webhook_key")


def check_segment(ctx: Context, data: dict) -> Problems:
    problems: Problems = []
    cond, parse_problems = parse_condition(data["condition"], ("condition",))
    problems.extend(parse_problems)
    if cond is not None:
        problems.extend(check_condition(cond, CUSTOMER_FIELDS, segments=ctx.ids("segment"), what="customer field"))
        ctx.segment_conditions[data["id"]] = cond
    return problems


def segment_cycles(ctx: Context) -> dict[str, Problem]:
    """Segments that refer to themselves through other segments, with the cycle."""
    out: dict[str, Problem] = {}
    refs = {sid: referenced_segments(c) for sid, c in ctx.segment_conditions.items()}

    def visit(sid: str, stack: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(refs.get(sid, ())):
            if nxt == stack[0]:
                return stack + (nxt,)
            if nxt not in stack:
                found = visit(nxt, stack + (nxt,))
                if found:
                    return found
        return None

    reported: set[frozenset[str]] = set()
    for sid in sorted(refs):
        cycle = visit(sid, (sid,))
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            node = next(n for n in _segment_refs(ctx.segment_conditions[sid]) if n.segment_id == cycle[1])
            out[sid] = Problem(node.path, "segment_cycle", f"segment cycle: {' → '.join(cycle)}")
    return out


def _segment_refs(cond: object):
    from engine.conditions.ast import All, Any, Not, SegmentRef

    stack = [cond]
    while stack:
        node = stack.pop()
        if isinstance(node, (All, Any)):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, SegmentRef):
            yield node


_JINJA = SandboxedEnvironment(autoescape=True)


def check_template(ctx: Context, raw: RawDefinition) -> Problems:
    data = raw.data
    problems: Problems = []
    for key in (("subject",), ("body",), ("html",), ("wecom", "title"), ("wecom", "url")):
        text = data.get(key[0]) if len(key) == 1 else data.get(key[0], {}).get(key[1])
        if not isinstance(text, str):
            continue
        # A block scalar is parsed as written in the file (a folded `>` block
        # joins lines, which would shift Jinja's line numbers).
        written = raw.positions.block_text.get(key)
        try:
            _JINJA.parse(written if written is not None else text)
        except TemplateSyntaxError as exc:
            offset = (exc.lineno or 1) - 1 + (1 if written is not None else 0)
            problems.append(Problem(key, "template_syntax",
                                    f"template syntax error in `{'.'.join(key)}`: {exc.message}", line_offset=offset))
    channels = data["channels"]
    if "email" in channels and "subject" not in data:
        problems.append(Problem(("channels",), "missing_subject", "an email template needs a `subject`"))
    if "sms" in data and "sms" not in channels:
        problems.append(Problem(("sms",), "unused", "`sms` settings on a template that is not sent by sms", at_key=True))
    if "wecom" in data and "wecom" not in channels:
        problems.append(Problem(("wecom",), "unused", "`wecom` settings on a template that is not sent by wecom", at_key=True))
    if "sms" in channels:
        sms = data.get("sms", {})
        for connector in ctx.connectors_for("sms"):
            needs = {"aliyun_sms": "aliyun_template_code", "tencent_sms": "tencent_template_id"}.get(str(connector.get("type")))
            if needs and needs not in sms:
                problems.append(Problem(("channels",), "sms_template_code",
                                        f"connector `{connector['id']}` ({connector['type']}) sends only provider-approved "
                                        f"templates: add `sms.{needs}` (and `sms.sign_name`)"))
            if needs and "sign_name" not in sms and "sign_name" not in connector.get("settings", {}):
                problems.append(Problem(("channels",), "sms_sign_name",
                                        f"connector `{connector['id']}` needs an SMS signature: add `sms.sign_name`"))
    return problems


def check_connector(ctx: Context, data: dict, known_types: Mapping[str, Any]) -> Problems:
    problems: Problems = []
    ctype = known_types.get(data["type"])
    if ctype is None:
        problems.append(Problem(("type",), "unknown_connector_type", unknown("connector type", data["type"], known_types)))
        return problems
    if ctype.channel is not None and ctype.channel != data["channel"]:
        problems.append(Problem(("channel",), "channel_mismatch",
                                f"connector type `{data['type']}` sends {ctype.channel}, not {data['channel']}"))
    secrets = data.get("secrets", {})
    for name in ctype.secrets:
        if name not in secrets:
            problems.append(Problem(("secrets",) if "secrets" in data else (), "missing_secret",
                                    f"connector type `{data['type']}` needs secret `{name}`: add `secrets: {{{name}: {{env: VARIABLE}}}}`",
                                    at_key=True))
    settings = data.get("settings", {})
    for name in ctype.settings:
        if name not in settings:
            problems.append(Problem(("settings",) if "settings" in data else (), "missing_setting",
                                    f"connector type `{data['type']}` needs setting `{name}`", at_key=True))
    for key, value in settings.items():
        if any(word in key.lower() for word in _SECRET_WORDS) and isinstance(value, str):
            problems.append(Problem(("settings", key), "secret_in_settings",
                                    f"`{key}` looks like a secret: never write it in a definition; "
                                    f"move it to `secrets: {{{key}: {{env: VARIABLE}}}}`", at_key=True))
    return problems
