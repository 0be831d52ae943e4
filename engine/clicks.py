"""Click tracking: the URLs a message template writes become short signed
links ``<base_url>/c/<token>`` when the message is delivered.

Why at delivery: rule messages are rendered by three paths (per journey,
batched, and set-based SQL, which writes rows before their outbox id is
known); the dispatcher sees every row with its id, so all of them share this
one rewrite. Why only the template's own URLs: a link redirects to what was
stored for its token, and only URLs written literally in the template are
stored — a URL that came from customer data (a name, a note) is left as
text, so a short link can never become an open redirect. ``{{ base_url }}``
counts as written: it is the installation's own address, a setting no
customer can change, so ``{{ base_url }}/app`` is tracked like the literal
URL it renders to. A URL with any other Jinja in it (``https://x.cn/{{ id
}}``) is not; the survey and unsubscribe links are signed links of their own.

A token is 10 base62 characters (≈ 8·10¹⁷ values) derived with HMAC-SHA256
from the instance secret, the outbox id and the URL: a retried delivery gets
the same token, and nobody can forge one. The full link is ~35 characters
with a short ``base_url`` — SMS-friendly (70 Chinese characters a segment).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from engine.storage import clicks_repo
from engine.storage.database import transaction
from engine.storage.events_repo import append_event
from engine.storage.times import to_db_time

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["CLICK_PATH", "TOKEN_LENGTH", "URL_PATTERN", "ClickLinker", "Followed", "LinkPlan", "click_key", "follow",
           "linker_for", "make_token", "plan_links", "rewrite", "short_tokens", "template_urls", "valid_token_shape"]

#: The web path of a short link (``/c/<token>``).
CLICK_PATH = "/c/"
TOKEN_LENGTH = 10
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PURPOSE = b"promoflow:click-links:v1"
#: An http(s) URL in text: printable ASCII up to a space, quote, angle bracket
#: or brace (Jinja), or any non-ASCII character (Chinese punctuation ends it).
URL_PATTERN = re.compile(r"https?://[!#-&(-;=?-z|~]+")
_URL = URL_PATTERN
#: Punctuation that ends a sentence rather than a URL.
_TRAILING = ".,;:!?)]'"
_TOKEN = re.compile(rf"[0-9A-Za-z]{{{TOKEN_LENGTH}}}")


def click_key(secret: str) -> bytes:
    """The key for click tokens, derived from the instance secret (a key
    of its own purpose, so no other signed link can be replayed as one)."""
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def make_token(key: bytes, message_id: int, url: str) -> str:
    """The token of ``url`` in message ``message_id``: deterministic, unforgeable."""
    digest = hmac.new(key, f"{int(message_id)}\x00{url}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest[:16], "big")
    out = []
    for _ in range(TOKEN_LENGTH):
        number, rest = divmod(number, 62)
        out.append(_ALPHABET[rest])
    return "".join(out)


def short_tokens(text: str | None, base_url: str) -> list[str]:
    """The tokens of the short links in a delivered text, in order (what a
    simulated customer — the demo, a test — follows with ``GET /c/<token>``)."""
    prefix = re.escape(base_url.rstrip("/") + CLICK_PATH)
    return re.findall(rf"{prefix}([0-9A-Za-z]{{{TOKEN_LENGTH}}})(?![0-9A-Za-z])", text or "")


def valid_token_shape(token: str) -> bool:
    """Whether ``token`` could be a click token (checked before any lookup)."""
    return bool(_TOKEN.fullmatch(token))


def _urls(text: str | None) -> list[str]:
    if not text:
        return []
    return [m.group(0).rstrip(_TRAILING) for m in _URL.finditer(text)]


#: ``{{ base_url }}`` in a template (any spacing, with or without whitespace control).
_BASE_URL_VAR = re.compile(r"\{\{-?\s*base_url\s*-?\}\}")


def template_urls(texts: Iterable[str | None], base_url: str = "") -> frozenset[str]:
    """The URLs written literally in a template's texts (body, html, subject,
    a WeCom card's url), ``{{ base_url }}`` read as ``base_url`` (the
    address the messages render it as). A URL next to other Jinja
    (``https://x.cn/{{ id }}``) is cut at the brace: the rendered URL then
    differs and is not tracked."""
    found: set[str] = set()
    for text in texts:
        text = text or ""
        if base_url.startswith(("http://", "https://")):
            text = _BASE_URL_VAR.sub(lambda _: base_url, text)
        for match in _URL.finditer(text):
            if text[match.end():match.end() + 1] != "{":
                found.add(match.group(0).rstrip(_TRAILING))
    return frozenset(found)


@dataclass(frozen=True)
class LinkPlan:
    """The short links of one message: ``url → token``."""

    message_id: int
    tokens: Mapping[str, str]


def plan_links(key: bytes, message_id: int, allowed: frozenset[str], texts: Iterable[str | None]) -> LinkPlan:
    """Which URLs of a rendered message get a short link: those in ``texts``
    that the template wrote itself (``allowed``)."""
    tokens: dict[str, str] = {}
    for text in texts:
        for url in _urls(text):
            if url in allowed and url not in tokens:
                tokens[url] = make_token(key, message_id, url)
    return LinkPlan(int(message_id), tokens)


def rewrite(text: Any, tokens: Mapping[str, str], base_url: str) -> Any:
    """``text`` with each planned URL replaced by its short link (anything
    that is not a string is returned as it is)."""
    if not isinstance(text, str) or not tokens:
        return text
    prefix = base_url.rstrip("/") + CLICK_PATH

    def swap(match: re.Match[str]) -> str:
        whole = match.group(0)
        url = whole.rstrip(_TRAILING)
        token = tokens.get(url)
        return whole if token is None else prefix + token + whole[len(url):]

    return _URL.sub(swap, text)


# --------------------------------------------------------------------------- delivery and clicks

#: Payload keys whose string values may hold a template URL (a WeCom card's ``url``).
_PARAM_TEXT = ("params", "options")


@dataclass(frozen=True)
class ClickLinker:
    """What the dispatcher needs to rewrite a claimed row's links:
    the key, the public ``base_url`` and each template's own URLs."""

    key: bytes
    base_url: str
    urls_of: Callable[[str], frozenset[str]]

    def apply(self, session_factory: sessionmaker[Session], rows: Sequence[dict[str, Any]],
              now: datetime) -> list[dict[str, Any]]:
        """``rows`` with the template URLs of customer messages replaced by
        short links, the links stored first (one transaction; a retried
        delivery finds them stored). Rows without such URLs come back as
        they were."""
        out: list[dict[str, Any]] = []
        stored: list[dict[str, Any]] = []
        db_now = to_db_time(now)
        for row in rows:
            allowed = self.urls_of(row["template_id"]) if row.get("template_id") and row.get("customer_id") else None
            if not allowed:
                out.append(row)
                continue
            payload = _payload(row.get("payload"))
            texts = [row.get("body"), row.get("subject"), payload.get("html"), *_param_texts(payload)]
            plan = plan_links(self.key, int(row["id"]), allowed, texts)
            if not plan.tokens:
                out.append(row)
                continue
            stored += [{"token": token, "message_id": int(row["id"]), "url": url,
                        "customer_id": int(row["customer_id"]), "rule_id": row.get("rule_id"),
                        "template_id": row.get("template_id"), "created_at": db_now}
                       for url, token in plan.tokens.items()]
            out.append(_rewritten(row, payload, plan.tokens, self.base_url))
        if stored:
            with transaction(session_factory) as session:
                clicks_repo.add_links(session, stored)
        return out


def _payload(value: Any) -> dict[str, Any]:
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def _param_texts(payload: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for key in _PARAM_TEXT:
        part = payload.get(key)
        if isinstance(part, Mapping):
            texts += [v for v in part.values() if isinstance(v, str)]
    return texts


def _rewritten(row: Mapping[str, Any], payload: dict[str, Any], tokens: Mapping[str, str],
               base_url: str) -> dict[str, Any]:
    new_payload = dict(payload)
    if "html" in new_payload:
        new_payload["html"] = rewrite(new_payload["html"], tokens, base_url)
    for key in _PARAM_TEXT:
        part = new_payload.get(key)
        if isinstance(part, Mapping):
            new_payload[key] = {k: rewrite(v, tokens, base_url) for k, v in part.items()}
    return {**row, "body": rewrite(row.get("body"), tokens, base_url),
            "subject": rewrite(row.get("subject"), tokens, base_url), "payload": new_payload}


def linker_for(definitions: Any, base_url: str, secret: str) -> ClickLinker | None:
    """The linker for a definitions version (None without a secret: nothing to sign with)."""
    if not secret:
        return None
    cache: dict[str, frozenset[str]] = {}

    def urls_of(template_id: str) -> frozenset[str]:
        if template_id not in cache:
            spec = getattr(definitions, "templates", {}).get(template_id)
            if spec is None:
                cache[template_id] = frozenset()
            else:
                wecom = getattr(spec, "wecom", None)
                cache[template_id] = template_urls([spec.body, spec.subject, spec.html,
                                                    getattr(wecom, "url", None)], base_url)
        return cache[template_id]

    return ClickLinker(click_key(secret), base_url, urls_of)


@dataclass(frozen=True)
class Followed:
    """Where a click goes, and whether it was the link's first."""

    url: str
    first: bool


def follow(session_factory: sessionmaker[Session], token: str, now: datetime,
           user_agent: str | None = None) -> Followed | None:
    """Record a click on ``token`` and return its URL (None: no such link —
    malformed, tampered or unknown). The first click of a link writes the
    ``message.clicked`` event (customer, message, rule, link) in the same
    transaction; every click is counted."""
    if not valid_token_shape(token):
        return None
    with transaction(session_factory) as session:
        link = clicks_repo.find(session, token)
        if link is None:
            return None
        first = clicks_repo.record_click(session, link.id, to_db_time(now), user_agent)
        if first and link.customer_id is not None:
            append_event(session, "message.clicked", "customer", link.customer_id,
                         {"customer_id": link.customer_id, "message_id": link.message_id, "rule_id": link.rule_id,
                          "template_id": link.template_id, "link": link.url, "token": link.token}, now)
    return Followed(link.url, first)
