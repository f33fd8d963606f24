"""The normalized inbound message: what every connector turns a platform event into.

No string in it may hold U+0000 (Postgres cannot store it; refused with a 422 on both databases, see
`chatbox.domain.untrusted`): a connector posting to the inbound route removes NULs first, as the
webhook connectors do for the pushes they verify. `sent_at` lies between 1970 and 9998 (UTC), so
every backend stores and reads it back whatever its time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from chatbox.domain.untrusted import MAX_TEXT, NoNul

ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255), NoNul]
ShortText = Annotated[str, StringConstraints(max_length=255), NoNul]
EventType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

# A message's time, in UTC: a platform's clock says 1970 or later, and a year short of datetime's last keeps a
# value inside every backend's range once shown in any time zone.
EARLIEST_SENT_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_SENT_AT = datetime(9999, 1, 1, tzinfo=UTC)


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
    url: Annotated[str, StringConstraints(max_length=2048), NoNul] | None = None
    file_id: Annotated[str, StringConstraints(max_length=512), NoNul] | None = None
    mime_type: ShortText | None = None
    name: ShortText | None = None
    size: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _needs_a_reference(self) -> Self:
        if not self.url and not self.file_id:
            raise ValueError("an attachment needs a url or a file_id")
        return self


# Events about another message: they name it in `target_external_id` and may carry no text of their own.
TARGETED_EVENTS = frozenset({"edit", "delete", "reaction"})


class Reaction(BaseModel):
    """A reaction event's emoji (a character, or a platform's name for it such as Slack's `:thumbsup:`)."""

    model_config = ConfigDict(extra="forbid")

    emoji: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64), NoNul]
    removed: bool = False


class InboundMessage(BaseModel):
    """One platform event for a mailbox. `external_message_id` is the idempotency key per connection."""

    model_config = ConfigDict(extra="forbid")

    external_chat_id: ExternalId
    external_message_id: ExternalId
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT), NoNul] | None = None
    sender_id: ShortText | None = None
    sender_name: ShortText | None = None
    chat_name: ShortText | None = None
    chat_type: ChatType | None = None
    sent_at: datetime | None = Field(default=None, description="When it was sent: 1970-01-01 to 9998-12-31 (UTC)")
    attachments: list[Attachment] = Field(default_factory=list, max_length=32)
    reply_to_external_id: ShortText | None = None
    event_type: EventType = "message"
    target_external_id: ShortText | None = Field(
        default=None, description="For edit, delete and reaction events: the platform id of the message concerned"
    )
    reaction: Reaction | None = None

    @field_validator("sent_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 once in UTC
            utc = None
        if utc is None or not EARLIEST_SENT_AT <= utc < LATEST_SENT_AT:
            raise ValueError("must lie between 1970-01-01 and 9998-12-31 (UTC)")
        return utc

    @model_validator(mode="after")
    def _has_content(self) -> Self:
        if self.event_type in TARGETED_EVENTS:
            self._fill_event_fields()
        says_what = self.event_type in ("delete", "reaction") and self.target_external_id  # the event is its content
        if not self.text and not self.attachments and not says_what:
            raise ValueError("a message needs text or at least one attachment")
        return self

    def _fill_event_fields(self) -> None:
        """Programs written before `target_external_id` and `reaction` named the target in `reply_to_external_id`
        and wrote a reaction as its emoji (`removed <emoji>` for a removal); read both forms the same way."""
        if self.target_external_id is None:
            self.target_external_id = self.reply_to_external_id
        if self.event_type != "reaction":
            return
        if self.reaction is None and self.text and self.text.strip():
            emoji = self.text.strip()
            removed = emoji.startswith("removed ")
            self.reaction = Reaction(emoji=emoji.removeprefix("removed ")[:64], removed=removed)
        if not self.text and self.reaction is not None:
            self.text = f"removed {self.reaction.emoji}" if self.reaction.removed else self.reaction.emoji

    def attachments_json(self) -> list[dict[str, Any]]:
        return [a.model_dump(exclude_none=True) for a in self.attachments]


class AcceptResult(BaseModel):
    message_id: str
    chat_id: str = Field(description="The chat address, `<platform>:<external_id>`")
    duplicate: bool
