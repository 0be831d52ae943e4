"""Message templates: Jinja2, always sandboxed, rendered once per message.

Two module-level sandboxes and nothing else (never a plain ``Environment``):

* ``_HTML`` autoescapes: HTML parts of a message (an email's ``html``, or the
  HTML alternative derived from its plain body);
* ``_TEXT`` does not: SMS, WeCom text, email subjects and plain bodies are not
  HTML, and escaping would show ``&amp;`` to the customer.

Both use ``StrictUndefined``: a template naming a value the context lacks is a
``TemplateRenderError`` (with the template id), not a message with a hole.
The sandbox refuses underscore attributes, function internals and unsafe
callables, so a template written in the designer cannot reach Python objects.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from engine.definitions.specs import EMPTY, TemplateSpec

__all__ = ["RenderedMessage", "TemplateRenderError", "render", "render_string"]


class TemplateRenderError(ValueError):
    """A template failed to render: undefined value, syntax error or sandbox violation."""

    def __init__(self, template_id: str, part: str, message: str):
        self.template_id = template_id
        self.part = part
        self.message = message
        super().__init__(f"template `{template_id}` ({part}): {message}")


@dataclass(frozen=True)
class RenderedMessage:
    """What goes into an outbox row. ``params`` are the provider template
    parameters (SMS ``sms.params``) and channel extras (WeCom title/url)."""

    subject: str | None
    body: str
    html: str | None = None
    params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)


_HTML = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=False)
_TEXT = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=False)

# Compiled templates by (environment, source). Sources are few (one per template
# part and version) and compiling dominates a render, so keep them for good.
_compiled: dict[tuple[bool, str], Template] = {}
_compiled_lock = threading.Lock()


def _compile(source: str, *, html: bool) -> Template:
    key = (html, source)
    template = _compiled.get(key)
    if template is None:
        template = (_HTML if html else _TEXT).from_string(source)
        with _compiled_lock:
            _compiled[key] = template
    return template


def render_string(source: str, context: Mapping[str, Any], *, html: bool = False, template_id: str = "-",
                  part: str = "body") -> str:
    """Render one template text in the sandbox (``html``: with autoescape).

    Raises:
        TemplateRenderError: syntax error, undefined value or sandbox violation.
    """
    try:
        return _compile(source, html=html).render(context)
    except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
        raise TemplateRenderError(template_id, part, exc.message or str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateRenderError(template_id, part, f"{type(exc).__name__}: {exc}") from None


def render(template: TemplateSpec, context: Mapping[str, Any], *, channel: str) -> RenderedMessage:
    """Render ``template`` for ``channel`` with ``context`` (``customer``, ``coupon``, ``record`` …).

    Email: the subject and plain body render without escaping; the HTML part
    renders with autoescape (``template.html`` if given, else the body with
    line breaks as ``<br>``). SMS: ``params`` maps each ``sms.params`` name to
    its value, looked up in the context, then in ``customer``, then ``coupon``.
    WeCom: ``params`` carries msgtype and the rendered title/url/btntxt.

    Raises:
        TemplateRenderError: see :func:`render_string`.
    """
    tid = template.id
    body = render_string(template.body, context, template_id=tid).strip()
    subject = html = None
    params: dict[str, Any] = {}
    if channel == "email":
        if template.subject:
            subject = render_string(template.subject, context, template_id=tid, part="subject").strip()
        elif template.title:
            subject = template.title
        if template.html:
            html = render_string(template.html, context, html=True, template_id=tid, part="html")
        else:
            html = str(Markup("<br>\n").join(escape(line) for line in body.split("\n")))
    elif channel == "sms" and template.sms is not None:
        params = {name: _param(name, context) for name in template.sms.params}
        if template.sms.sign_name:
            params["sign_name"] = template.sms.sign_name
    elif channel == "wecom" and template.wecom is not None:
        w = template.wecom
        params = {"msgtype": w.msgtype}
        for part, source in (("title", w.title), ("url", w.url), ("btntxt", w.btntxt)):
            if source:
                params[part] = render_string(source, context, template_id=tid, part=part).strip()
        subject = params.get("title")
    return RenderedMessage(subject=subject, body=body, html=html, params=params)


def _param(name: str, context: Mapping[str, Any]) -> str:
    for scope in (context, context.get("customer"), context.get("coupon")):
        if isinstance(scope, Mapping) and scope.get(name) is not None:
            return str(scope[name])
    return ""
