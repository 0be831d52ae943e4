"""``remove_tag``: take a tag off the journey's customer (see :mod:`engine.steps.add_tag`).

The same runtime and SQL form as ``add_tag`` (they read the spec's
``remove`` flag), so only what tells the two apart is declared here."""

from __future__ import annotations

from typing import Any

from engine.definitions.specs import TagSpec
from engine.steps.add_tag import AddTagStep
from engine.steps.registry import BuildSite

__all__ = ["STEP", "RemoveTagStep"]


class RemoveTagStep(AddTagStep):
    key = "remove_tag"
    label = {"zh": "去掉标签", "en": "Remove a tag"}
    help = {"zh": "去掉客户的一个标签（没有则不变）。", "en": "Take a tag off the customer (no change when it is not there)."}

    def owns(self, spec: Any) -> bool:
        return isinstance(spec, TagSpec) and spec.remove

    def build(self, body: Any, site: BuildSite) -> TagSpec:
        return TagSpec(body, remove=True)


STEP = RemoveTagStep()
