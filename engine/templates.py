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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from engine.definitions.specs import EMPTY, TemplateSpec

__all__ = ["MAX_OUTPUT", "RenderedMessage", "Renderer", "TemplateRenderError", "output_cap", "references", "render",
           "render_string", "text_pieces"]


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


#: The longest text one part of a message may render to, by channel (issue
#: 16): a template looping over ranges could otherwise build megabytes per
#: customer. Rendering stops as soon as a part passes its cap.
MAX_OUTPUT: Mapping[str, int] = {"sms": 1_000, "wecom": 4_000, "email": 200_000}
#: For a part of a channel not listed above, and for :func:`render_string`.
MAX_OUTPUT_OTHER = 200_000
#: Subjects and WeCom titles, urls and button texts.
MAX_OUTPUT_SHORT = 1_000


def output_cap(channel: str, part: str) -> int:
    """The cap of one rendered part of a message on ``channel``."""
    if part in ("subject", "title", "url", "btntxt"):
        return MAX_OUTPUT_SHORT
    if part == "html":
        return MAX_OUTPUT.get(channel, MAX_OUTPUT_OTHER) * 5  # markup around the same text
    return MAX_OUTPUT.get(channel, MAX_OUTPUT_OTHER)


def _too_long(template_id: str, part: str, cap: int) -> TemplateRenderError:
    return TemplateRenderError(template_id, part, f"renders to more than {cap} characters, the limit of this part")


def _bounded(chunks: Any, cap: int, template_id: str, part: str) -> str:
    """Join rendered chunks, stopping with an error once they pass ``cap``."""
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise _too_long(template_id, part, cap)
        out.append(chunk)
    return "".join(out)


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
        template = _compile(source, html=html)
        return _bounded(template.generate(context), MAX_OUTPUT_OTHER, template_id, part)
    except TemplateRenderError:  # the output cap
        raise
    except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
        raise TemplateRenderError(template_id, part, exc.message or str(exc)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateRenderError(template_id, part, f"{type(exc).__name__}: {exc}") from None


def _part(source: str, *, html: bool, template_id: str, part: str,
          cap: int = MAX_OUTPUT_OTHER) -> Callable[[Mapping[str, Any]], str]:
    """A render function for one template text: ``Template.render`` without its
    per-call argument copying and traceback rewriting (errors as in
    :func:`render_string`), stopping at ``cap`` characters."""
    try:
        template = _compile(source, html=html)
    except TemplateError as exc:
        raise TemplateRenderError(template_id, part, exc.message or str(exc)) from None
    root, new_context = template.root_render_func, template.new_context

    def run(context: Mapping[str, Any]) -> str:
        try:
            return _bounded(root(new_context(context)), cap, template_id, part)  # type: ignore[arg-type]
        except TemplateRenderError:  # the output cap
            raise
        except TemplateError as exc:
            raise TemplateRenderError(template_id, part, exc.message or str(exc)) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateRenderError(template_id, part, f"{type(exc).__name__}: {exc}") from None

    pieces = None if html else _substitution(source)
    if pieces is None:
        return run

    def substitute(context: Mapping[str, Any]) -> str:
        # Text and ``{{ name.attr }}`` only: look the values up in plain dicts
        # and join, as Jinja would; anything irregular (a missing value, an
        # object that is not a dict) renders through Jinja, errors included.
        out = []
        for literal, name, attr in pieces:
            if name is None:
                out.append(literal)
                continue
            scope = context.get(name)
            if type(scope) is not dict or attr not in scope:
                return run(context)
            value = scope[attr]
            out.append(value if type(value) is str else str(value))
        text = "".join(out)
        if len(text) > cap:
            raise _too_long(template_id, part, cap)
        return text

    return substitute


def text_pieces(source: str) -> list[tuple[str, str | None, str | None]] | None:
    """The pieces of a text template made only of text and ``{{ name.attr }}``
    outputs: (text, None, None) or ("", name, attr) each; None for any other
    template. Such a template renders as the join of the texts and ``str()``
    of the values, which is what lets a set-based run render it in SQL."""
    return _substitution(source)


def _substitution(source: str) -> list[tuple[str, str | None, str | None]] | None:
    """The pieces of a text template made only of text and ``{{ name.attr }}``
    (or ``name['attr']``) outputs, without filters or tags; None otherwise.
    Attributes that dicts have as methods (``items`` …) are left to Jinja."""
    try:
        tree = _TEXT.parse(source)
    except TemplateError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return [] if not tree.body else None
    pieces: list[tuple[str, str | None, str | None]] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            pieces.append((node.data, None, None))
            continue
        if isinstance(node, nodes.Getattr):
            attr: Any = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            attr = node.arg.value
        else:
            return None
        inner = node.node
        if not isinstance(inner, nodes.Name) or not isinstance(attr, str) or hasattr(dict, attr) \
                or attr.startswith("_"):
            return None
        pieces.append(("", inner.name, attr))
    return pieces


class Renderer:
    """:func:`render` of one template for one channel, compiled once: a journey
    batch renders the same template for thousands of customers.

    Raises (at construction):
        TemplateRenderError: a part has a syntax error.
    """

    def __init__(self, template: TemplateSpec, channel: str):
        tid = template.id
        self.template, self.channel = template, channel
        self._body = _part(template.body, html=False, template_id=tid, part="body", cap=output_cap(channel, "body"))
        self._subject: Callable[[Mapping[str, Any]], str] | None = None
        self._html: Callable[[Mapping[str, Any]], str] | None = None
        self._title: str | None = None
        self._wecom: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = []
        self._params: tuple[str, ...] = ()
        self._sign_name: str | None = None
        if channel == "email":
            if template.subject:
                self._subject = _part(template.subject, html=False, template_id=tid, part="subject",
                                      cap=output_cap(channel, "subject"))
            elif template.title:
                self._title = template.title
            if template.html:
                self._html = _part(template.html, html=True, template_id=tid, part="html",
                                   cap=output_cap(channel, "html"))
        elif channel == "sms" and template.sms is not None:
            self._params = template.sms.params
            self._sign_name = template.sms.sign_name
        elif channel == "wecom" and template.wecom is not None:
            w = template.wecom
            self._wecom = [(part, _part(source, html=False, template_id=tid, part=part, cap=output_cap(channel, part)))
                           for part, source in (("title", w.title), ("url", w.url), ("btntxt", w.btntxt))
                           if source]

    def sources(self) -> list[str]:
        """The template texts this renderer renders (for :func:`references`)."""
        t = self.template
        out = [t.body]
        if self.channel == "email":
            out += [x for x in (t.subject, t.html) if x]
        elif self.channel == "wecom" and t.wecom is not None:
            out += [x for x in (t.wecom.title, t.wecom.url, t.wecom.btntxt) if x]
        return out

    @property
    def params(self) -> tuple[str, ...]:
        """SMS parameter names (looked up in the context, then ``customer``, then ``coupon``)."""
        return self._params

    def __call__(self, context: Mapping[str, Any]) -> RenderedMessage:
        body = self._body(context).strip()
        subject = html = None
        params: dict[str, Any] = {}
        channel = self.channel
        if channel == "email":
            if self._subject is not None:
                subject = self._subject(context).strip()
            elif self._title:
                subject = self._title
            if self._html is not None:
                html = self._html(context)
            else:
                html = str(Markup("<br>\n").join(escape(line) for line in body.split("\n")))
        elif channel == "sms" and self.template.sms is not None:
            params = {name: _param(name, context) for name in self._params}
            if self._sign_name:
                params["sign_name"] = self._sign_name
        elif channel == "wecom" and self.template.wecom is not None:
            params = {"msgtype": self.template.wecom.msgtype}
            for part, run in self._wecom:
                params[part] = run(context).strip()
            subject = params.get("title")
        return RenderedMessage(subject=subject, body=body, html=html, params=params)


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
    return Renderer(template, channel)(context)


def references(sources: list[str]) -> dict[str, frozenset[str] | None]:
    """The context names ``sources`` read: for each top-level name, the set of
    its attributes they read (``customer.name``, ``customer['phone']``), or
    None when the object is used as a whole (passed to a filter, looped over …).

    Raises:
        TemplateRenderError: a source has a syntax error.
    """
    attrs: dict[str, set[str] | None] = {}
    for source in sources:
        try:
            tree = _TEXT.parse(source)
        except TemplateError as exc:
            raise TemplateRenderError("-", "body", exc.message or str(exc)) from None
        covered: set[int] = set()
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            assert isinstance(node, nodes.Getattr | nodes.Getitem)
            inner = node.node
            if not isinstance(inner, nodes.Name) or inner.ctx != "load":
                continue
            if isinstance(node, nodes.Getattr):
                key: Any = node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                key = node.arg.value
            else:
                continue
            covered.add(id(inner))
            found = attrs.setdefault(inner.name, set())
            if found is not None:
                found.add(key)
        for name in tree.find_all(nodes.Name):
            if name.ctx == "load" and id(name) not in covered:
                attrs[name.name] = None
    return {k: (frozenset(v) if v is not None else None) for k, v in attrs.items()}


def _param(name: str, context: Mapping[str, Any]) -> str:
    for scope in (context, context.get("customer"), context.get("coupon")):
        if isinstance(scope, Mapping) and scope.get(name) is not None:
            return str(scope[name])
    return ""
