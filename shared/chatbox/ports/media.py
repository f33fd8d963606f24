"""The media port: fetching an inbound attachment from its platform, and sending a file.

A separate capability beside `Connector.send`: a connector that has these methods (found the way
`chatbox.ports.platforms` finds webhook connectors, by callable attributes) offers `GET /v1/attachments/{id}`,
`read_attachment` and `send_file` for its platform; one that lacks them simply lacks those.

Example:
    ```python
    media = media_connector(runtime.platforms.connector("telegram"))
    if media is not None:
        fetched = media.fetch_attachment(ctx, FileRef.of(stored_attachment), max_bytes=20 << 20)
        with fetched:
            for chunk in fetched.chunks: ...
    ```
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeGuard

from chatbox.domain.attachments import AttachmentTooLargeError
from chatbox.ports.connector import ConnectionContext

CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class FileRef:
    """An inbound attachment as the connector stored it: a platform `file_id` and/or a `url`."""

    kind: str
    file_id: str | None = None
    url: str | None = None
    mime_type: str | None = None
    name: str | None = None
    size: int | None = None

    @classmethod
    def of(cls, stored: Mapping[str, Any]) -> FileRef:
        def text(key: str) -> str | None:
            value = stored.get(key)
            return value if isinstance(value, str) and value else None

        size = stored.get("size")
        return cls(
            kind=text("kind") or "file",
            file_id=text("file_id"),
            url=text("url"),
            mime_type=text("mime_type"),
            name=text("name"),
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )


@dataclass
class FetchedFile:
    """An open download: `chunks` yields the bytes (at most the `max_bytes` asked for: past it, the iterator
    raises AttachmentTooLargeError); `close` releases the connection. Use it as a context manager."""

    chunks: Iterator[bytes]
    mime_type: str | None
    size: int | None  # the platform's Content-Length, when it sent one
    close: Callable[[], None] = field(default=lambda: None)

    def __enter__(self) -> FetchedFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read_all(self) -> bytes:
        """Every byte (the caller chose `max_bytes` small enough to hold in memory)."""
        return b"".join(self.chunks)


def capped(chunks: Iterator[bytes], max_bytes: int, what: str) -> Iterator[bytes]:
    """`chunks`, raising AttachmentTooLargeError once more than `max_bytes` came (a server that lied about
    its Content-Length, or sent none)."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > max_bytes:
            raise AttachmentTooLargeError(f"{what} is larger than {max_bytes} bytes")
        yield chunk


def check_declared_size(size: int | None, max_bytes: int, what: str) -> None:
    """AttachmentTooLargeError before any byte is read when the declared size is over the limit."""
    if size is not None and size > max_bytes:
        raise AttachmentTooLargeError(f"{what} is {size} bytes, over the limit of {max_bytes} bytes")


@dataclass(frozen=True)
class OutboundFile:
    """A file to send: `chat_id` is the platform's own chat id; `data` the whole file (checked against the
    platform's `upload_limit` before the connector is called)."""

    chat_id: str
    filename: str
    data: bytes
    mime_type: str
    caption: str | None = None
    reply_to: str | None = None

    @property
    def is_image(self) -> bool:
        return self.mime_type in ("image/jpeg", "image/png", "image/webp", "image/gif")


@dataclass(frozen=True)
class SentFile:
    """The platform's id of the message carrying the file, and the platform's reference to the file, stored with
    the outbound message like an inbound attachment (`file_id` and/or `url`)."""

    external_id: str
    file_id: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class UploadLimit:
    """What a platform takes: at most `max_bytes`; `note` says so for the agent (e.g. a photo's smaller limit)."""

    max_bytes: int
    note: str = ""


class MediaConnector(Protocol):
    """Fetches attachments from and sends files to one platform (or, for containers, every container platform).

    Raises (both methods): AttachmentTooLargeError, PlatformRefusedError, RateLimitedError,
    ConnectorUnavailableError, NotFoundError (the platform no longer has the file). `send_file` raises
    UnknownOutcomeError when the upload left and no answer came back (it may have been posted): a send's
    idempotency key then never re-sends it.
    """

    def fetch_attachment(self, ctx: ConnectionContext, ref: FileRef, *, max_bytes: int) -> FetchedFile: ...

    def send_file(self, ctx: ConnectionContext, file: OutboundFile) -> SentFile: ...

    def upload_limit(self, ctx: ConnectionContext, mime_type: str) -> UploadLimit: ...


def media_connector(connector: object) -> MediaConnector | None:
    """The connector as a MediaConnector when it has the capability, else None."""
    return connector if _is_media_connector(connector) else None


def _is_media_connector(connector: object) -> TypeGuard[MediaConnector]:
    return connector is not None and all(
        callable(getattr(connector, name, None)) for name in ("fetch_attachment", "send_file", "upload_limit")
    )
