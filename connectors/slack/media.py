"""Slack media: inbound files by `files.info` + `url_private_download` with the bot token; outbound files by the
upload flow v2 (`files.getUploadURLExternal` → POST the bytes to the upload URL → `files.completeUploadExternal`,
slack_sdk's `files_upload_v2`).

The bot token goes only to Slack's own file host (`files.slack.com`, or the configured API root's host for a
stand-in or an Enterprise Grid proxy): a `url_private` naming any other host is refused, not fetched.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.web import WebClient

from chatbox.domain.errors import ConnectorUnavailableError, NotFoundError, PlatformRefusedError, RateLimitedError
from chatbox.ports.media import CHUNK_BYTES, FetchedFile, FileRef, OutboundFile, SentFile, UploadLimit, capped
from connectors.slack.translate import message_external_id, thread_root

# Slack's limit for one uploaded file.
UPLOAD_LIMIT = 1024 * 1024 * 1024
FILE_HOSTS = ("files.slack.com",)


def upload_limit() -> UploadLimit:
    return UploadLimit(UPLOAD_LIMIT, ", which takes files up to 1 GB")


def _file_host_allowed(url: str, api_root: str) -> bool:
    parts, api = urlsplit(url), urlsplit(api_root)
    if parts.scheme == api.scheme and parts.netloc == api.netloc:
        return True
    return parts.scheme == "https" and (parts.hostname or "") in FILE_HOSTS


def _api_error(exc: SlackApiError, method: str) -> Exception:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    error = str(data.get("error") or f"HTTP {exc.response.status_code}")
    if exc.response.status_code == 429 or error == "ratelimited":
        return RateLimitedError(f"Slack rate limit on {method}; slow down", None)
    if error in ("file_not_found", "file_deleted"):
        return NotFoundError(f"Slack no longer has this file ({error})")
    if error in ("channel_not_found", "not_in_channel", "is_archived", "file_uploads_disabled", "invalid_channel"):
        return PlatformRefusedError(f"Slack refused the file ({method}: {error})")
    return ConnectorUnavailableError(
        f"Slack failed {method} ({error}); the operator may need to add the files:read / files:write scope"
    )


def fetch_attachment(
    client: WebClient, http: httpx.Client, token: str, api_root: str, ref: FileRef, max_bytes: int
) -> FetchedFile:
    """files.info for the file id, then GET its `url_private_download` with `Authorization: Bearer <bot token>`."""
    if not ref.file_id:
        raise NotFoundError("this Slack attachment has no file id")
    try:
        info = client.files_info(file=ref.file_id)
    except SlackApiError as exc:
        raise _api_error(exc, "files.info") from exc
    except (SlackClientError, OSError) as exc:
        raise ConnectorUnavailableError(f"Slack cannot be reached ({type(exc).__name__}); try again later") from exc
    file: Any = info.get("file")
    url = (file.get("url_private_download") or file.get("url_private")) if isinstance(file, dict) else None
    if not isinstance(url, str) or not url:
        raise NotFoundError("Slack answered files.info without a download URL for this file")
    if not _file_host_allowed(url, api_root):
        raise ConnectorUnavailableError("Slack named a download host other than files.slack.com; not fetched")
    try:
        request = http.build_request("GET", url, headers={"authorization": f"Bearer {token}"})
        response = http.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise ConnectorUnavailableError(f"Slack's file host cannot be reached ({type(exc).__name__})") from exc
    if response.status_code != 200:
        response.close()
        # Without the right token Slack redirects to its login page rather than answering 401.
        raise ConnectorUnavailableError(
            f"Slack's file host answered HTTP {response.status_code}; the bot may lack the files:read scope"
        )
    length = response.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    mime_type = file.get("mimetype") if isinstance(file.get("mimetype"), str) else None
    chunks = capped(response.iter_bytes(CHUNK_BYTES), max_bytes, "the Slack file")
    return FetchedFile(chunks, mime_type, declared, response.close)


def send_file(client: WebClient, file: OutboundFile) -> SentFile:
    """files_upload_v2 to the channel (in the thread of `reply_to`), the caption as its initial comment.

    The message's `ts` is read from the file's `shares` when Slack already lists it (files.info); until then
    the message is named by the file (`"{channel}:file:{file_id}"`)."""
    arguments: dict[str, Any] = {
        "channel": file.chat_id,
        "file": file.data,
        "filename": file.filename,
        "title": file.filename,
    }
    if file.caption:
        arguments["initial_comment"] = file.caption
    thread_ts = thread_root(file.reply_to) if file.reply_to else None
    if thread_ts:
        arguments["thread_ts"] = thread_ts
    try:
        completion = client.files_upload_v2(**arguments)
    except SlackApiError as exc:
        raise _api_error(exc, "files upload") from exc
    except SlackRequestError as exc:  # the upload URL refused the bytes
        raise ConnectorUnavailableError(f"Slack refused the upload ({type(exc).__name__}); try again later") from exc
    except (SlackClientError, OSError) as exc:
        raise ConnectorUnavailableError(f"Slack cannot be reached ({type(exc).__name__}); try again later") from exc
    uploaded: Any = completion.get("file") or {}
    file_id = uploaded.get("id") if isinstance(uploaded, dict) else None
    if not isinstance(file_id, str):
        raise ConnectorUnavailableError("Slack completed the upload without a file id")
    ts = _shared_ts(client, file_id, file.chat_id)
    external_id = message_external_id(file.chat_id, ts, thread_ts) if ts else f"{file.chat_id}:file:{file_id}"
    return SentFile(external_id, file_id=file_id)


def _shared_ts(client: WebClient, file_id: str, channel: str) -> str | None:
    try:
        info = client.files_info(file=file_id)
    except (SlackApiError, SlackClientError, OSError):
        return None  # the file went out; its message id is only a nicety
    file: Any = info.get("file")
    shares = file.get("shares") if isinstance(file, dict) else None
    for visibility in ("public", "private"):
        found = shares.get(visibility, {}).get(channel) if isinstance(shares, dict) else None
        if isinstance(found, list) and found and isinstance(found[0], dict) and isinstance(found[0].get("ts"), str):
            return str(found[0]["ts"])
    return None
