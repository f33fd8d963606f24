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
from chatbox.domain.addresses import AddressPolicy, check_url_statically
from chatbox.domain.errors import (
    ConnectorError,
    ConnectorUnavailableError,
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
from chatbox.ports.probe import ProbeResult


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

    def close(self) -> None:
        for client in (self._client, self._managed_client):
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


def sends_url_of(outbound_url: str, request_id: str) -> str:
    """`/v1/sends/{request_id}` on the program's origin: where it answers what became of a send."""
    parts = urlsplit(outbound_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/v1/sends/{quote(request_id, safe='')}", "", ""))


def health_url_of(outbound_url: str) -> str:
    """`/healthz` on the program's origin: the contract serves it beside `/v1/send`."""
    parts = urlsplit(outbound_url)
    return urlunsplit((parts.scheme, parts.netloc, "/healthz", "", ""))
