"""Downloading a file an agent names by URL (`send_file(url=…)`), under the webhook address policy.

The URL is the agent's, so it is a tenant's: it goes through the pinned outbound client
(`chatbox.adapters.outbound_http`: resolved once, every address checked, connected to exactly those, no
redirects followed, no proxy from the environment), and no more than `max_bytes` are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from chatbox.adapters.outbound_http import build_outbound_client
from chatbox.domain.addresses import AddressPolicy, check_url_statically
from chatbox.domain.attachments import AttachmentTooLargeError
from chatbox.domain.errors import InvalidInputError
from chatbox.ports.media import CHUNK_BYTES, check_declared_size


@dataclass(frozen=True)
class DownloadedFile:
    data: bytes
    mime_type: str | None


def download_file(url: str, policy: AddressPolicy, *, max_bytes: int, timeout: float = 20.0) -> DownloadedFile:
    """GET `url` and read at most `max_bytes`.

    Raises:
        TargetRefusedError: the URL is not http(s), or leads to an address the policy refuses (nothing was sent).
        AttachmentTooLargeError: the file is larger than `max_bytes` (declared or read).
        InvalidInputError: no 200 answer (a redirect included), or the server cannot be reached.
    """
    check_url_statically(url, policy, field="url")
    with build_outbound_client(policy, timeout=timeout) as client:
        try:
            with client.stream("GET", url, headers={"user-agent": "chatbox-file-fetch/1"}) as response:
                if response.status_code != 200:
                    raise InvalidInputError(
                        f"the url answered HTTP {response.status_code}, not the file (redirects are not followed)"
                    )
                length = response.headers.get("content-length")
                check_declared_size(int(length) if length and length.isdigit() else None, max_bytes, "the file")
                parts: list[bytes] = []
                seen = 0
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    seen += len(chunk)
                    if seen > max_bytes:
                        raise AttachmentTooLargeError(f"the file at the url is larger than {max_bytes} bytes")
                    parts.append(chunk)
                content_type = response.headers.get("content-type")
        except httpx.HTTPError as exc:
            raise InvalidInputError(f"the url cannot be fetched ({type(exc).__name__})") from exc
    mime = content_type.split(";")[0].strip().lower() if content_type else None
    return DownloadedFile(b"".join(parts), mime or None)
