"""The normalized inbound message: what every connector turns a platform event into."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

MAX_TEXT = 65_536


class ChatType(StrEnum):
    direct = "direct"
    group = "group"
    channel = "channel"


class Attachment(BaseModel):
    """A file on the platform: a `url` to fetch, or a platform `file_id` resolved later."""

    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = Field(
        description="image, document, voice, sticker, video, audio, file, ..."
    )
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    file_id: Annotated[str, StringConstraints(max_length=512)] | None = None
    mime_type: Annotated[str, StringConstraints(max_length=255)] | None = None
    name: ShortText | None = None
    size: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _needs_a_reference(self) -> Self:
        if not self.url and not self.file_id:
            raise ValueError("an attachment needs a url or a file_id")
        return self


class InboundMessage(BaseModel):
    """One platform event for a mailbox. `external_message_id` is the idempotency key per connection."""

    model_config = ConfigDict(extra="forbid")

    external_chat_id: ExternalId
    external_message_id: ExternalId
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT)] | None = None
    sender_id: ShortText | None = None
    sender_name: ShortText | None = None
    chat_name: ShortText | None = None
    chat_type: ChatType | None = None
    sent_at: datetime | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=32)
    reply_to_external_id: ShortText | None = None
    event_type: EventType = "message"

    @field_validator("sent_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _has_content(self) -> Self:
        if not self.text and not self.attachments:
            raise ValueError("a message needs text or at least one attachment")
        return self

    def attachments_json(self) -> list[dict[str, Any]]:
        return [a.model_dump(exclude_none=True) for a in self.attachments]


class AcceptResult(BaseModel):
    message_id: str
    chat_id: str = Field(description="The chat address, `<platform>:<external_id>`")
    duplicate: bool
