"""The HTTP client side of the container-connector contract (`connectors/CONTRACT.md`).

Signal and Discord connectors are long-running programs of their own; chatbox reaches them with
one POST per message to the `outbound_url` stored on the connection, authenticated with the
account's `mcp_proxy_auth` credential named by `outbound_credential_id`. The URL is a tenant's, so the
request goes through the pinned outbound client (`chatbox.adapters.outbound_http`) under the connector
policy (`chatbox.runtime.connector_address_policy`: public addresses, the dev allowances, and the hosts
the operator admits with CHATBOX_CONNECTOR_ALLOWED_HOSTS). A managed connection's program runs beside chatbox
on a loopback port chatbox chose (`config.managed`, which no tenant can set): its URL is reached on loopback
whatever the policy says of tenants' URLs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from chatbox.adapters.http_webhook import parse_retry_after
from chatbox.adapters.outbound_http import build_outbound_client
from chatbox.domain.addresses import AddressPolicy, OperatorAllowlist, check_url_statically
from chatbox.domain.attachments import AttachmentTooLargeError
from chatbox.domain.errors import (
    ConnectorError,
    ConnectorUnavailableError,
    NotFoundError,
    PlatformRefusedError,
    RateLimitedError,
    TargetRefusedError,
    UnknownOutcomeError,
)
from chatbox.ports.connector import (
    MANAGED_PROGRAM,
    OUTBOUND_AUTH_SECRET,
    OUTBOUND_CREDENTIAL,
    OUTBOUND_URL,
    ConnectionContext,
    OutboundMessage,
    SentMessage,
)
from chatbox.ports.media import CHUNK_BYTES, FetchedFile, FileRef, OutboundFile, SentFile, UploadLimit, capped
from chatbox.ports.message_actions import MessageRef
from chatbox.ports.probe import ProbeResult

# What chatbox posts to a program at most (the relay toolkit's limit, `connectors/relay/media.py`).
CONTAINER_FILE_LIMIT = 100 * 1024 * 1024


class HttpContainerConnector:
    """A `Connector` for every container platform: `POST {outbound_url}` with a JSON body.

    Thread-safe; keeps one pooled HTTP client. A redirect is an error, never followed.
    """

    def __init__(self, policy: AddressPolicy, *, timeout: float = 10.0) -> None:
        self.policy = policy
        self.managed_policy = replace(policy, allow_loopback=True)
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._managed_client: httpx.Client | None = None
        self._cdn_client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        """Built on first send: a process that never sends to a container pays nothing for it."""
        if self._client is None:
            self._client = build_outbound_client(self.policy, timeout=self.timeout)
        return self._client

    @property
    def managed_client(self) -> httpx.Client:
        """For managed connections' programs on loopback (built on first use)."""
        if self._managed_client is None:
            self._managed_client = build_outbound_client(self.managed_policy, timeout=self.timeout)
        return self._managed_client

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:
        url = ctx.config.get(OUTBOUND_URL)
        if not isinstance(url, str) or not url:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connection {ctx.connection_id} has no config.{OUTBOUND_URL}; "
                "the operator must set it to the connector's send URL"
            )
        managed = ctx.config.get(MANAGED_PROGRAM) is True
        policy, client = (self.managed_policy, self.managed_client) if managed else (self.policy, self.client)
        try:
            check_url_statically(url, policy, field=f"config.{OUTBOUND_URL}")
        except TargetRefusedError as exc:
            raise _refused(ctx, exc) from exc
        headers = {"content-type": "application/json", "user-agent": "chatbox-connector-client/1"}
        token = ctx.secrets.get(OUTBOUND_AUTH_SECRET)
        if token:
            headers["authorization"] = f"Bearer {token}"
        # The send's own id: the program records each request_id's answer, and a retry of the same send (the
        # same idempotency key) reuses it, so the program never sends it twice (CONTRACT.md, "Idempotent sends").
        request_id = msg.send_id or str(uuid.uuid4())
        body = {
            "request_id": request_id,
            "connection_id": ctx.connection_id,
            "platform": ctx.platform,
            "chat_id": msg.chat_id,
            "text": msg.text,
            "reply_to": msg.reply_to,
            "options": dict(msg.options),
            "parts_sent": list(msg.parts_sent),
            "uncertain_since": msg.uncertain_since,
        }
        try:
            response = client.post(url, content=json.dumps(body).encode(), headers=headers)
        except TargetRefusedError as exc:  # the host resolved to a refused address: nothing was sent
            raise _refused(ctx, exc) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connector cannot be reached ({type(exc).__name__}); try again later"
            ) from exc
        except httpx.HTTPError as exc:
            # The request left: the connector may have sent it. Its record of the request_id says.
            response = self._look_up(ctx, client, url, headers, request_id, exc)
        return _sent_or_raise(ctx.platform, response, msg.parts_sent)

    def _look_up(
        self,
        ctx: ConnectionContext,
        client: httpx.Client,
        url: str,
        headers: dict[str, str],
        request_id: str,
        cause: httpx.HTTPError,
    ) -> httpx.Response:
        """`GET /v1/sends/{request_id}`: the program's answer to the unanswered POST, as the POST would have been.

        Raises:
            UnknownOutcomeError: the program has no answer yet (in flight), no record, or cannot be asked.
        """
        lookup_url = sends_url_of(url, request_id)
        unknown = (
            f"the {ctx.platform} connector did not answer the send ({type(cause).__name__} after the request left)"
        )
        try:
            response = client.get(lookup_url, headers={k: v for k, v in headers.items() if k != "content-type"})
        except httpx.HTTPError as exc:
            raise UnknownOutcomeError(
                f"{unknown} and could not be asked what became of it ({type(exc).__name__}): whether it was sent is "
                "unknown; calling again with the same idempotency_key asks again and never sends it twice"
            ) from cause
        if response.status_code in (404, 409):
            state = "is still sending it" if response.status_code == 409 else "has no record of it"
            raise UnknownOutcomeError(
                f"{unknown}, and the connector {state}: whether it was sent is unknown; calling again with the same "
                "idempotency_key asks again and never sends it twice"
            ) from cause
        return response

    # --- message actions (CONTRACT.md, "Message actions"): `POST /v1/{edit,delete,react,typing}` beside /v1/send ---

    def edit_message(self, ctx: ConnectionContext, target: MessageRef, text: str) -> None:
        self._act(ctx, "edit", {"chat_id": target.chat_id, "message_id": target.message_id, "text": text})

    def delete_message(self, ctx: ConnectionContext, target: MessageRef) -> None:
        self._act(ctx, "delete", {"chat_id": target.chat_id, "message_id": target.message_id})

    def react(self, ctx: ConnectionContext, target: MessageRef, emoji: str, *, remove: bool) -> None:
        fields = {"chat_id": target.chat_id, "message_id": target.message_id, "emoji": emoji, "remove": remove}
        self._act(ctx, "react", fields)

    def send_typing(self, ctx: ConnectionContext, chat_id: str) -> None:
        self._act(ctx, "typing", {"chat_id": chat_id})

    def _act(self, ctx: ConnectionContext, action: str, fields: dict[str, object]) -> None:
        url = ctx.config.get(OUTBOUND_URL)
        if not isinstance(url, str) or not url:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connection {ctx.connection_id} has no config.{OUTBOUND_URL}; "
                "the operator must set it to the connector's send URL"
            )
        action_url = action_url_of(url, action)
        managed = ctx.config.get(MANAGED_PROGRAM) is True
        policy, client = (self.managed_policy, self.managed_client) if managed else (self.policy, self.client)
        headers = {"content-type": "application/json", "user-agent": "chatbox-connector-client/1"}
        token = ctx.secrets.get(OUTBOUND_AUTH_SECRET)
        if token:
            headers["authorization"] = f"Bearer {token}"
        body = {"request_id": str(uuid.uuid4()), "connection_id": ctx.connection_id, "platform": ctx.platform, **fields}
        try:
            check_url_statically(action_url, policy, field=f"config.{OUTBOUND_URL}")
            response = client.post(action_url, content=json.dumps(body).encode(), headers=headers)
        except TargetRefusedError as exc:
            raise _refused(ctx, exc) from exc
        except httpx.TimeoutException as exc:
            raise ConnectorUnavailableError(f"the {ctx.platform} connector timed out; try again") from exc
        except httpx.HTTPError as exc:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connector cannot be reached ({type(exc).__name__}); try again later"
            ) from exc
        if response.status_code == 404 and _error_code(response) is None:
            raise PlatformRefusedError(f"the {ctx.platform} connector does not offer {action} (an older program)")
        if not 200 <= response.status_code < 300:
            _raise_for(ctx.platform, response)  # the contract's typed error

    def check(self, ctx: ConnectionContext, *, ingest_url: str) -> list[ProbeResult]:  # noqa: ARG002
        """GET the program's `/healthz` (`connectors/CONTRACT.md`), beside `outbound_url`'s `/v1/send`."""
        what = f"{ctx.platform} connector"
        url = ctx.config.get(OUTBOUND_URL)
        if not isinstance(url, str) or not url:
            return [ProbeResult(what, "fail", f"no config.{OUTBOUND_URL}", "PATCH the connection's outbound_url")]
        health_url = health_url_of(url)
        managed = ctx.config.get(MANAGED_PROGRAM) is True
        policy, client = (self.managed_policy, self.managed_client) if managed else (self.policy, self.client)
        try:
            check_url_statically(health_url, policy, field=f"config.{OUTBOUND_URL}")
            response = client.get(health_url, headers={"user-agent": "chatbox-connector-client/1"})
        except TargetRefusedError as exc:
            return [ProbeResult(what, "fail", exc.message, "admit its host with CHATBOX_CONNECTOR_ALLOWED_HOSTS")]
        except httpx.HTTPError as exc:
            fix = "start the connector's program (managed ones run under `chatbox api`/`dev`)"
            return [ProbeResult(what, "fail", f"{health_url} cannot be reached ({type(exc).__name__})", fix)]
        if response.status_code == 200:
            return [ProbeResult(what, "ok", f"{health_url} answers 200")]
        detail = f"{health_url} answers {response.status_code}: {response.text[:200]}"
        return [ProbeResult(what, "fail", detail, "read the connector program's log")]

    # --- media (chatbox.ports.media; CONTRACT.md "Media") ----------------------------------------

    @property
    def cdn_client(self) -> httpx.Client:
        """For attachment URLs a program reported (a Discord CDN link): the webhook policy, without the operator's
        connector allowlist, since the URL came from a platform message, not from the operator."""
        if self._cdn_client is None:
            self._cdn_client = build_outbound_client(self.cdn_client_policy, timeout=self.timeout)
        return self._cdn_client

    def _program(self, ctx: ConnectionContext, path: str) -> tuple[str, httpx.Client, dict[str, str]]:
        """The program's URL for `path` (beside `/v1/send`), the client for it, and the contract's headers."""
        url = ctx.config.get(OUTBOUND_URL)
        if not isinstance(url, str) or not url:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connection {ctx.connection_id} has no config.{OUTBOUND_URL}; "
                "the operator must set it to the connector's send URL"
            )
        managed = ctx.config.get(MANAGED_PROGRAM) is True
        policy, client = (self.managed_policy, self.managed_client) if managed else (self.policy, self.client)
        parts = urlsplit(url)
        target = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        try:
            check_url_statically(target, policy, field=f"config.{OUTBOUND_URL}")
        except TargetRefusedError as exc:
            raise _refused(ctx, exc) from exc
        headers = {"user-agent": "chatbox-connector-client/1"}
        token = ctx.secrets.get(OUTBOUND_AUTH_SECRET)
        if token:
            headers["authorization"] = f"Bearer {token}"
        return target, client, headers

    def fetch_attachment(self, ctx: ConnectionContext, ref: FileRef, *, max_bytes: int) -> FetchedFile:
        """The program's `GET /v1/attachments/{file_id}`, or, for an attachment the platform serves at a URL
        (Discord's CDN), that URL under the address policy."""
        if ref.file_id:
            url, client, headers = self._program(ctx, f"/v1/attachments/{quote(ref.file_id, safe='')}")
        elif ref.url:
            url, client, headers = ref.url, self.cdn_client, {"user-agent": "chatbox-attachment-fetch/1"}
            try:
                check_url_statically(url, self.cdn_client_policy, field="attachment url")
            except TargetRefusedError as exc:
                raise ConnectorUnavailableError(f"the attachment's URL is refused: {exc.message}") from exc
        else:
            raise NotFoundError("this attachment has neither a file id nor a URL")
        try:
            response = client.send(client.build_request("GET", url, headers=headers), stream=True)
        except TargetRefusedError as exc:
            raise ConnectorUnavailableError(f"the attachment's URL is refused: {exc.message}") from exc
        except httpx.HTTPError as exc:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} attachment cannot be fetched ({type(exc).__name__}); try again later"
            ) from exc
        if response.status_code != 200:
            response.read()
            response.close()
            if response.status_code in (403, 404, 410):
                raise NotFoundError(f"{ctx.platform} no longer has this attachment (HTTP {response.status_code})")
            raise ConnectorUnavailableError(
                f"the {ctx.platform} attachment could not be fetched (HTTP {response.status_code}); try again later"
            )
        length = response.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else None
        content_type = response.headers.get("content-type")
        mime = content_type.split(";")[0].strip() if content_type else None
        chunks = capped(response.iter_bytes(CHUNK_BYTES), max_bytes, f"the {ctx.platform} attachment")
        return FetchedFile(chunks, None if mime == "application/octet-stream" else mime, declared, response.close)

    @property
    def cdn_client_policy(self) -> AddressPolicy:
        return replace(self.policy, operator_allowlist=OperatorAllowlist())

    def upload_limit(self, ctx: ConnectionContext, mime_type: str) -> UploadLimit:  # noqa: ARG002
        """The program checks its platform's own limit (413 `too_large` before the platform is called); chatbox
        caps what it posts with CHATBOX_ATTACHMENT_MAX_BYTES."""
        return UploadLimit(CONTAINER_FILE_LIMIT, f" (its {ctx.platform} connector may take less)")

    def send_file(self, ctx: ConnectionContext, file: OutboundFile) -> SentFile:
        """`POST /v1/files` (multipart: `payload_json`, `file`) to the connection's program."""
        url, client, headers = self._program(ctx, "/v1/files")
        payload = {
            "request_id": str(uuid.uuid4()),
            "connection_id": ctx.connection_id,
            "platform": ctx.platform,
            "chat_id": file.chat_id,
            "filename": file.filename,
            "mime_type": file.mime_type,
            "caption": file.caption,
            "reply_to": file.reply_to,
        }
        try:
            response = client.post(
                url,
                headers=headers,
                data={"payload_json": json.dumps(payload)},
                files={"file": (file.filename, file.data, file.mime_type)},
            )
        except TargetRefusedError as exc:
            raise _refused(ctx, exc) from exc
        except httpx.TimeoutException as exc:
            raise ConnectorUnavailableError(f"the {ctx.platform} connector timed out; try again") from exc
        except httpx.HTTPError as exc:
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connector cannot be reached ({type(exc).__name__}); try again later"
            ) from exc
        if response.status_code == 413:
            raise AttachmentTooLargeError(f"{ctx.platform} refused the file as too large: {_error_message(response)}")
        if response.status_code in (404, 405):
            raise ConnectorUnavailableError(
                f"the {ctx.platform} connector does not take files (HTTP {response.status_code}); update it"
            )
        if not 200 <= response.status_code < 300:
            _raise_for(ctx.platform, response)
        message_id = _sent_message(ctx.platform, response).external_id
        body = response.json()
        file_id = body.get("file_id") if isinstance(body.get("file_id"), str) else None
        sent_url = body.get("url") if isinstance(body.get("url"), str) else None
        return SentFile(message_id, file_id=file_id, url=sent_url)

    def close(self) -> None:
        for client in (self._client, self._managed_client, self._cdn_client):
            if client is not None:
                client.close()


def _refused(ctx: ConnectionContext, exc: TargetRefusedError) -> ConnectorUnavailableError:
    """The refusal says only what was refused and why: no request was made, so there is no reply to show."""
    return ConnectorUnavailableError(
        f"the {ctx.platform} connection {ctx.connection_id} cannot send: {exc.message}; "
        f"the operator must fix config.{OUTBOUND_URL}"
    )


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        return f"{body['message']} ({code})" if isinstance(code, str) else str(body["message"])
    return f"HTTP {response.status_code}"


def _sent_or_raise(platform: str, response: httpx.Response, parts_sent: tuple[str, ...]) -> SentMessage:
    """Translate the connector's answer per the contract: ids on 2xx, typed errors (with the parts that went out,
    when the answer names them) otherwise."""
    if 200 <= response.status_code < 300:
        return _sent_message(platform, response)
    try:
        _raise_for(platform, response)
    except ConnectorError as exc:
        body = _json_object(response)
        named = body.get("parts_sent")
        if isinstance(named, list) and all(isinstance(part, str) for part in named):
            exc.parts_sent = tuple(named)
        elif parts_sent:
            exc.parts_sent = parts_sent
        total = body.get("parts_total")
        exc.parts_total = total if isinstance(total, int) and not isinstance(total, bool) else 0
        raise
    raise AssertionError("unreachable")  # _raise_for raises for every status it is given


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _sent_message(platform: str, response: httpx.Response) -> SentMessage:
    status = response.status_code
    try:
        body = response.json()
    except ValueError as exc:
        raise ConnectorUnavailableError(f"the {platform} connector answered {status} without JSON") from exc
    message_id = body.get("message_id") if isinstance(body, dict) else None
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        message_id = str(message_id)
    if not isinstance(message_id, str) or not message_id:
        raise ConnectorUnavailableError(f"the {platform} connector answered {status} without a message_id")
    parts = body.get("part_ids")
    part_ids = tuple(parts) if isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts) else ()
    return SentMessage(message_id, part_ids if part_ids and part_ids[0] == message_id else ())


def _raise_for(platform: str, response: httpx.Response) -> None:
    """The typed error of a non-2xx answer."""
    status = response.status_code
    if _json_object(response).get("code") == "unknown_outcome":
        raise UnknownOutcomeError(f"{platform}: {_error_message(response)}")
    if 300 <= status < 400:
        raise ConnectorUnavailableError(
            f"the {platform} connector answered a redirect (HTTP {status}), which chatbox does not follow; "
            f"config.{OUTBOUND_URL} must be the connector's send URL itself"
        )
    detail = _error_message(response)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            try:
                raw = response.json().get("retry_after")
                retry_after = float(raw) if isinstance(raw, int | float) else None
            except (ValueError, AttributeError):
                retry_after = None
        wait = f"; wait {retry_after:g}s before sending again" if retry_after is not None else "; slow down"
        raise RateLimitedError(f"{platform} rate limit: {detail}{wait}", retry_after)
    if status == 401:
        raise ConnectorUnavailableError(
            f"the {platform} connector rejected chatbox's credential; the operator must fix "
            f"config.{OUTBOUND_CREDENTIAL}"
        )
    if 400 <= status < 500:
        raise PlatformRefusedError(f"{platform} refused the message: {detail}")
    raise ConnectorUnavailableError(f"the {platform} connector failed ({detail}); try again later")


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def action_url_of(outbound_url: str, action: str) -> str:
    """`/v1/<action>` beside the send URL: its last path segment replaced (`…/v1/send` → `…/v1/edit`)."""
    parts = urlsplit(outbound_url)
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/{action}", "", ""))


def sends_url_of(outbound_url: str, request_id: str) -> str:
    """`/v1/sends/{request_id}` on the program's origin: where it answers what became of a send."""
    parts = urlsplit(outbound_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/v1/sends/{quote(request_id, safe='')}", "", ""))


def health_url_of(outbound_url: str) -> str:
    """`/healthz` on the program's origin: the contract serves it beside `/v1/send`."""
    parts = urlsplit(outbound_url)
    return urlunsplit((parts.scheme, parts.netloc, "/healthz", "", ""))
