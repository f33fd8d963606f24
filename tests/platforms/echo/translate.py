"""The echo platform's one translator, shared by its webhook and its long poll (as Telegram's is)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chatbox.domain.normalized import InboundMessage


def to_inbound(update: Any) -> InboundMessage:
    """An echo update `{"update", "chat", "from", "text"}` as a normalized message (KeyError/TypeError/ValueError
    for anything else)."""
    return InboundMessage(
        external_chat_id=str(update["chat"]),
        external_message_id=f"{update['chat']}:{update['update']}",
        text=update["text"],
        sender_id=update["from"],
        sender_name=update["from"],
        sent_at=datetime.now(UTC),
    )
