"""A pull connector for a generic JSON survey API, polled by cursor.

``GET <url>?since=<cursor>`` (no ``since`` on the first call) answers
``{"items": [...], "next": "<cursor>"}``; items are in the format of
:mod:`connectors.survey_items`. An item that fails validation comes back as a
``FeedbackItem(kind="invalid")`` with its errors (the engine records it as an
event rather than losing it or stalling the cursor behind it).

Settings: ``url`` (required), ``cursor_param`` (default ``since``),
``items_key`` (default ``items``), ``next_key`` (default ``next``), timeouts.
Secrets: optional ``api_token`` sent as ``Authorization: Bearer``.
This connector only receives (channel ``feedback``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from engine.ports import Capabilities, ConfigurationError, ConnectorError, FeedbackItem, OutgoingMessage, SendResult

from ._base import HttpConnector, TransportFailure
from .survey_items import parse_item


class SurveyPullConnector(HttpConnector):
    """Fetches survey answers page by page after a cursor."""

    channel = "feedback"
    required_settings = ("url",)
    capabilities: ClassVar[Capabilities] = Capabilities(feedback=True)

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Nothing is sent through a receive-only connector."""
        return [SendResult.permanent(m.id, "inbound_only", "this connector only receives feedback")
                for m in messages]

    def pull_feedback(self, cursor: str | None) -> tuple[list[FeedbackItem], str | None]:
        """One page after ``cursor`` and the cursor to ask with next time (the
        same cursor when the API gives none).

        Raises:
            ConfigurationError: the API refuses the token (401/403).
            ConnectorError: no answer, a non-2xx status or an unreadable body;
                nothing should be stored and the cursor kept.
        """
        params = {} if cursor is None else {str(self.setting("cursor_param", "since")): cursor}
        headers = {"Accept": "application/json"}
        if "api_token" in self._secrets:
            headers["Authorization"] = f"Bearer {self.secret('api_token')}"
        try:
            response = self.request("GET", str(self.setting("url")), params=params, headers=headers)
            if response.status_code in (401, 403):
                raise ConfigurationError(f"connector `{self.id}`: the survey API refused the token "
                                         f"(HTTP {response.status_code})", code=f"http_{response.status_code}")
            if response.status_code >= 300:
                raise ConnectorError(f"survey API answered HTTP {response.status_code}",
                                     code=f"http_{response.status_code}")
            body = self.json_body(response)
        except TransportFailure as failure:
            raise ConnectorError(f"survey API: {failure.detail}", code=failure.code) from None
        except RecursionError:  # absurdly nested JSON
            raise ConnectorError("survey API: unreadable answer", code="bad_response") from None
        raw_items: Any = body.get(str(self.setting("items_key", "items")), [])
        if not isinstance(raw_items, list):
            raise ConnectorError("survey API: `items` is not a list", code="bad_response")
        next_cursor = body.get(str(self.setting("next_key", "next")))
        items: list[FeedbackItem] = []
        for index, raw in enumerate(raw_items):
            item, errors = parse_item(raw)
            if item is None:
                ident = raw.get("id") if isinstance(raw, dict) else None
                items.append(FeedbackItem("invalid", provider_id=None if ident is None else str(ident)[:128],
                                          data={"errors": errors, "index": index}))
            else:
                items.append(item)
        return items, cursor if next_cursor in (None, "") else str(next_cursor)
