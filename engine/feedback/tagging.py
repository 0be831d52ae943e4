"""Keyword rules: which tags a piece of feedback gets, and whether a reply is
an opt-out. The rules are data (``kind: feedback_tags`` definitions); this
module only matches them.

Matching works on an NFKC-normalised, case-folded text, so full-width letters
(ＴＤ) and upper/lower case match their plain forms. A tag keyword matches
anywhere in the text ("物流太慢了" contains "慢"). An opt-out keyword must be
the whole reply once spaces and punctuation are stripped ("TD", "退订。") —
except keywords of two or more CJK characters, which also match inside a
longer reply ("请帮我退订"): Latin keywords such as "TD" or "stop" are too
likely to occur inside ordinary words to be matched as substrings.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from engine.definitions.specs import FeedbackTagRule, FeedbackTagsSpec

__all__ = ["DEFAULT_OPT_OUT_CHANNELS", "DEFAULT_OPT_OUT_KEYWORDS", "TagRules", "normalise"]

#: Used when no ``feedback_tags`` definition names opt-out keywords.
DEFAULT_OPT_OUT_KEYWORDS: tuple[str, ...] = ("TD", "退订", "unsubscribe")
DEFAULT_OPT_OUT_CHANNELS: tuple[str, ...] = ("sms", "email", "wecom")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _bare(text: str) -> str:
    """Letters and digits only (spaces and punctuation dropped)."""
    return "".join(ch for ch in normalise(text) if unicodedata.category(ch)[0] in ("L", "N"))


def _is_cjk(word: str) -> bool:
    return len(word) >= 2 and all("\u4e00" <= ch <= "\u9fff" for ch in word)


@dataclass(frozen=True)
class TagRules:
    """Every ``feedback_tags`` definition merged: tag rules in definition order,
    opt-out keywords and channels united."""

    rules: tuple[FeedbackTagRule, ...] = ()
    opt_out_keywords: tuple[str, ...] = DEFAULT_OPT_OUT_KEYWORDS
    opt_out_channels: tuple[str, ...] = DEFAULT_OPT_OUT_CHANNELS

    @classmethod
    def from_specs(cls, specs: Iterable[FeedbackTagsSpec]) -> TagRules:
        specs = list(specs)
        rules = tuple(r for s in specs for r in s.rules)
        words = tuple(dict.fromkeys(w for s in specs for w in s.opt_out_keywords)) or DEFAULT_OPT_OUT_KEYWORDS
        channels = tuple(dict.fromkeys(c for s in specs for c in s.opt_out_channels)) or DEFAULT_OPT_OUT_CHANNELS
        return cls(rules, words, channels)

    def tags_for(self, text: str | None, score: int | None = None) -> list[str]:
        """The tags whose keywords occur in ``text`` (in rule order, no repeats)."""
        if not text:
            return []
        folded = normalise(text)
        found: list[str] = []
        for rule in self.rules:
            if rule.score_at_most is not None and (score is None or score > rule.score_at_most):
                continue
            if rule.tag not in found and any(normalise(k) in folded for k in rule.keywords):
                found.append(rule.tag)
        return found

    def is_opt_out(self, text: str | None) -> bool:
        """Whether a reply asks to stop messages (see the module docstring)."""
        if not text:
            return False
        bare = _bare(text)
        if not bare:
            return False
        for word in self.opt_out_keywords:
            key = _bare(word)
            if key and (bare == key or (_is_cjk(key) and key in bare)):
                return True
        return False
