"""The built-in sandbox: a connector that delivers SMS, e-mail and WeCom
messages into an inbox inside the installation instead of a provider.

Why: a demo (and a trial installation) has no provider accounts, and a
message that waits for a secret forever shows nothing. With the sandbox every
message goes ``sent`` at once and can be read on the app's ``/sandbox`` page,
like a phone's or a mail client's inbox, its short ``/c/`` links clickable.

Messages are appended as JSON lines to ``<folder>/messages.jsonl`` (one
line per delivery, written under a file lock and flushed before the send is
reported, so a reported ``sent`` is on disk). ``folder`` is the ``folder``
setting, else ``$PROMOFLOW_INSTANCE_PATH/sandbox``, else ``instance/sandbox``
— the instance folder the app's page reads. ``promoflow demo`` (setting
``connector_sandbox: true``) routes every sending connector here.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import requests

from engine.ports import Capabilities, Clock, OutgoingMessage, SendResult

from ._base import BaseConnector

__all__ = ["FILE_NAME", "SandboxConnector", "SandboxMessage", "default_folder", "read_inbox"]

FILE_NAME = "messages.jsonl"
_lock = threading.Lock()


def default_folder(env: Mapping[str, str] | None = None) -> Path:
    """Where the sandbox keeps its messages when no ``folder`` is set."""
    env = os.environ if env is None else env
    return Path(env.get("PROMOFLOW_INSTANCE_PATH") or "instance") / "sandbox"


@dataclass(frozen=True)
class SandboxMessage:
    """One delivered message as the sandbox inbox shows it."""

    provider_id: str
    message_id: str
    connector: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    html: str | None
    url: str | None
    at: datetime
    customer_id: int | None


class SandboxConnector(BaseConnector):
    """Accepts every message of any channel and files it in the sandbox inbox."""

    channel = None
    capabilities: ClassVar[Capabilities] = Capabilities(max_batch=200)

    def __init__(self, spec: Any, secrets: Mapping[str, str], *,
                 session: requests.Session | None = None, clock: Clock | None = None) -> None:
        super().__init__(spec, secrets, session=session, clock=clock)
        folder = self.setting("folder")
        self.folder = Path(str(folder)) if folder else default_folder()

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """File ``messages``; every one is accepted (the sandbox is the recipient)."""
        at = datetime.fromtimestamp(self.now_ts(), UTC).isoformat()
        lines, results = [], []
        for message in messages:
            provider_id = f"sandbox-{message.id}-{message.attempt}"
            options = message.options or {}
            url = options.get("url") or (message.params or {}).get("url")  # a WeCom card's link
            lines.append(json.dumps({
                "provider_id": provider_id, "message_id": message.id, "connector": self.id,
                "channel": message.channel, "recipient": message.recipient, "subject": message.subject,
                "body": message.body, "html": message.html,
                "url": url if isinstance(url, str) else None,
                "at": at, "customer_id": options.get("customer_id"),
            }, ensure_ascii=False, default=str))
            results.append(SendResult.accepted(message.id, provider_id, "sandbox"))
        if lines:
            self.folder.mkdir(parents=True, exist_ok=True)
            with _lock, open(self.folder / FILE_NAME, "a", encoding="utf-8") as stream:
                fcntl.flock(stream, fcntl.LOCK_EX)
                try:
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
                    os.fsync(stream.fileno())
                finally:
                    fcntl.flock(stream, fcntl.LOCK_UN)
        return results


def read_inbox(folder: Path, *, channel: str | None = None, recipient: str | None = None,
               limit: int = 200) -> list[SandboxMessage]:
    """The latest ``limit`` delivered messages, newest first (of ``channel``
    and ``recipient`` when given). A line that is not JSON (a torn write) is skipped."""
    path = Path(folder) / FILE_NAME
    if not path.is_file():
        return []
    kept: deque[SandboxMessage] = deque(maxlen=max(1, limit))
    with open(path, encoding="utf-8") as stream:
        for line in stream:
            try:
                data = json.loads(line)
                item = SandboxMessage(
                    str(data["provider_id"]), str(data["message_id"]), str(data["connector"]),
                    str(data["channel"]), str(data["recipient"]), data.get("subject"), str(data.get("body") or ""),
                    data.get("html"), data.get("url"), datetime.fromisoformat(data["at"]),
                    int(data["customer_id"]) if data.get("customer_id") is not None else None)
            except (ValueError, KeyError, TypeError):
                continue
            if (channel is None or item.channel == channel) and (recipient is None or item.recipient == recipient):
                kept.append(item)
    return list(reversed(kept))
