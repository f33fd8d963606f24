"""The part of Telegram's Bot API `Update` that chatbox reads, as pydantic models (no SDK on ingest).

python-telegram-bot's `Update.de_json` builds a frozen object per nested value and cost about 12% of the
event loop on the ingest path; these models validate only the fields chatbox turns into a message, in
compiled code, and ignore every other field (Telegram adds fields often; an unknown one must not refuse an
update). Sends speak the Bot API over httpx (`bot_api.py`); no SDK is involved. Field names and types are
the Bot API's (https://core.telegram.org/bots/api#update).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PRIVATE = "private"


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class User(_Shape):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None

    @property
    def full_name(self) -> str:
        """As the SDK's `User.full_name`: first and last name."""
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


class Chat(_Shape):
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class PhotoSize(_Shape):
    file_id: str
    width: int
    height: int
    file_size: int | None = None


class File(_Shape):
    """A document, voice note, audio file or video: the fields chatbox keeps of each."""

    file_id: str
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None


class Sticker(_Shape):
    file_id: str
    emoji: str | None = None
    file_size: int | None = None


class RepliedMessage(_Shape):
    """The message replied to: only its id is kept (its own content is not re-validated)."""

    message_id: int


class Message(_Shape):
    message_id: int
    date: int  # Unix time, seconds
    chat: Chat
    from_user: User | None = Field(default=None, alias="from")
    sender_chat: Chat | None = None
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    reply_to_message: RepliedMessage | None = None
    photo: list[PhotoSize] = Field(default_factory=list)  # a factory: a `[]` default is deep-copied per update
    document: File | None = None
    voice: File | None = None
    audio: File | None = None
    video: File | None = None
    sticker: Sticker | None = None


class ReactionType(_Shape):
    """`ReactionTypeEmoji` (`emoji`), `ReactionTypeCustomEmoji` (`custom_emoji_id`) or `ReactionTypePaid` (neither)."""

    type: str
    emoji: str | None = None
    custom_emoji_id: str | None = None


class MessageReactionUpdated(_Shape):
    """A user's (or an anonymous chat's) reactions to one message, before and after a change."""

    chat: Chat
    message_id: int
    date: int  # Unix time, seconds
    user: User | None = None
    actor_chat: Chat | None = None
    old_reaction: list[ReactionType] = Field(default_factory=list)
    new_reaction: list[ReactionType] = Field(default_factory=list)


class Update(_Shape):
    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    channel_post: Message | None = None
    edited_channel_post: Message | None = None
    # Validated on its own (`translate.update_to_outcome`): a reaction chatbox cannot read is ignored, not refused.
    message_reaction: dict[str, object] | None = None
