"""Attachments as an agent sees them: stable chatbox ids, one small set of kinds, and signed short-lived links.

An attachment's id is derived from its message's id and its place in the message
(`att_<message id body>_<index>`), not stored: every stored message, old ones included, has ids at once,
no migration rewrites the attachments JSON, and an id leads straight to its message by primary key.
A message's attachments never change after it is accepted, so the id is as stable as a stored one.

A link is `{public_url}/v1/attachments/{id}?expires=<unix s>&signature=<base64url HMAC-SHA256>`, signed
over `{id}.{expires}` with a key derived from the vault key (`Vault.derived_key`): whoever holds the link
may fetch that one attachment until it expires, with no token of the mailbox.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from chatbox.domain.errors import InvalidInputError

LINK_KEY_PURPOSE = "attachment links v1"
KINDS = ("image", "audio", "video", "file", "sticker", "voice")
_ID = re.compile(r"^att_([0-9A-HJKMNP-TV-Z]{26})_([0-9]{1,2})$")
# The kinds connectors used before the set above was fixed, read as its nearest member.
_KIND_ALIASES = {"photo": "image", "document": "file", "gif": "video", "animation": "video", "video_note": "video"}


class AttachmentTooLargeError(InvalidInputError):
    """A file over a size limit (chatbox's, or the platform's), refused before it is fetched in full or sent."""

    code = "too_large"


def attachment_id(message_id: str, index: int) -> str:
    """`att_<body>_<index>` for the `index`-th attachment of message `msg_<body>`."""
    return f"att_{message_id.partition('_')[2]}_{index}"


def parse_attachment_id(value: str) -> tuple[str, int] | None:
    """(message id, index) of a well-formed attachment id, else None (refused before any query)."""
    match = _ID.match(value)
    return (f"msg_{match.group(1)}", int(match.group(2))) if match else None


def normal_kind(kind: object, mime_type: object = None) -> str:
    """One of KINDS: the stored kind when it is one (or an alias), else guessed from the MIME type."""
    if isinstance(kind, str):
        kind = _KIND_ALIASES.get(kind, kind)
        if kind in KINDS:
            return kind
    if isinstance(mime_type, str):
        family = mime_type.split("/", 1)[0]
        if family in ("image", "audio", "video"):
            return family
    return "file"


@dataclass(frozen=True)
class LinkSigner:
    """Signs and checks attachment links with one key (see the module docstring)."""

    key: bytes
    public_url: str
    lifetime_seconds: int

    def _signature(self, attachment: str, expires: int) -> str:
        digest = hmac.new(self.key, f"{attachment}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def link(self, attachment: str, now: float) -> str:
        expires = int(now) + self.lifetime_seconds
        query = urlencode({"expires": expires, "signature": self._signature(attachment, expires)})
        return f"{self.public_url}/v1/attachments/{attachment}?{query}"

    def is_valid(self, attachment: str, expires: str, signature: str, now: float) -> bool:
        """Whether the link's signature is this key's for `attachment` and `expires` lies ahead (constant time)."""
        if not expires.isdigit() or len(expires) > 12 or int(expires) < now:
            return False
        return hmac.compare_digest(self._signature(attachment, int(expires)).encode(), signature.encode())


def present_attachment(
    message_id: str, index: int, stored: Mapping[str, Any], signer: LinkSigner | None, now: float
) -> dict[str, Any]:
    """A stored attachment as webhook bodies and read_chat show it: id, kind, mime_type, size, name, url.

    The platform's own reference (a file id, a CDN url) stays inside chatbox: the url is chatbox's."""
    ident = attachment_id(message_id, index)
    shown: dict[str, Any] = {
        "id": ident,
        "kind": normal_kind(stored.get("kind"), stored.get("mime_type")),
        "mime_type": stored.get("mime_type"),
        "size": stored.get("size"),
        "name": stored.get("name"),
    }
    if signer is not None:
        shown["url"] = signer.link(ident, now)
    return shown


def present_attachments(
    message_id: str, stored: Sequence[Mapping[str, Any]], signer: LinkSigner | None
) -> list[dict[str, Any]]:
    """A message's stored attachments as `present_attachment` shows each (links signed now)."""
    now = time.time()
    return [present_attachment(message_id, index, item, signer, now) for index, item in enumerate(stored)]


_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


def sniff_image_type(data: bytes) -> str | None:
    """The image type its first bytes name (PNG, JPEG, GIF, WebP), for platforms that serve every file as
    application/octet-stream (Telegram's file downloads); None for anything else."""
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None
