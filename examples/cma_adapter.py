"""chatbox -> Claude Managed Agents: a small ASGI app that turns chatbox's signed webhook into session events.

    uvicorn examples.cma_adapter:app --host 127.0.0.1 --port 9100

For each delivery chatbox POSTs to `/webhook`, the adapter

1. verifies the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`) in
   constant time, with a timestamp tolerance of 5 minutes either way (401 otherwise, nothing sent);
2. finds the mailbox's session in its configuration (404 when the mailbox has none);
3. POSTs `{"events": [...]}` to `{ANTHROPIC_BASE_URL}/v1/sessions/{session_id}/events`: a `user.message`
   with the rendered `content`, preceded by a `system.message` with the `ephemeral` field when chatbox sent one;
4. answers 200 only once the session accepted the events. A 429 or 5xx from the API comes back to chatbox as it
   is (529 as 503), with its `Retry-After`, so chatbox retries later; any other refusal answers 502, so the
   delivery is retried and, if it never succeeds, dead-lettered where an operator sees and redrives it.

A retried delivery (the same `webhook-id`) whose events a session already accepted is answered 200 and not sent
again. What it remembers, and its limits, are in `SentWebhooks`. The walkthrough, the configuration and the API
facts this relies on: docs/CMA_INTEGRATION.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatbox.domain.errors import InvalidInputError
from chatbox.domain.redaction import install_log_redaction, register_secrets
from chatbox.domain.signing import decode_signing_secret

logger = logging.getLogger("cma_adapter")

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
MANAGED_AGENTS_BETA = "managed-agents-2026-04-01"
TIMESTAMP_TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 1024 * 1024
EphemeralMode = Literal["system", "user", "drop"]
EPHEMERAL_MODES: tuple[EphemeralMode, ...] = ("system", "user", "drop")

# Ids go into a URL path and a log line: letters, digits, `_` and `-` only, so neither can be bent.
_MAILBOX_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class ConfigError(ValueError):
    """A setting is missing or malformed. The message names the variable, never its value."""


class SignatureError(Exception):
    """The request does not prove it came from chatbox (fixed words: nothing of the request is repeated)."""


# --- configuration -------------------------------------------------------------------------------------------


def parse_session_map(text: str) -> dict[str, str]:
    """The mailbox -> session map: a JSON object `{"mbx_...": "sesn_..."}` or `mbx_...=sesn_...,mbx_...=sesn_...`.

    Raises ConfigError naming what is wrong (an entry's position, not its text)."""
    text = text.strip()
    pairs: list[tuple[object, object]]
    if text.startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError("CMA_SESSIONS is not valid JSON") from exc
        if not isinstance(parsed, dict):
            raise ConfigError("CMA_SESSIONS must be a JSON object of mailbox id -> session id")
        pairs = list(parsed.items())
    else:
        pairs = []
        for position, entry in enumerate((part.strip() for part in text.split(",")), start=1):
            if not entry:
                continue
            left, equals, right = entry.partition("=")
            if not equals:
                raise ConfigError(f"CMA_SESSIONS entry {position} is not MAILBOX_ID=SESSION_ID")
            pairs.append((left.strip(), right.strip()))
    sessions: dict[str, str] = {}
    for position, (mailbox, session) in enumerate(pairs, start=1):
        if not isinstance(mailbox, str) or not _MAILBOX_ID.match(mailbox):
            raise ConfigError(f"CMA_SESSIONS entry {position}: the mailbox id must be letters, digits and _")
        if not isinstance(session, str) or not _SESSION_ID.match(session):
            raise ConfigError(f"CMA_SESSIONS entry {position}: the session id must be letters, digits, _ and -")
        if mailbox in sessions:
            raise ConfigError(f"CMA_SESSIONS entry {position}: the mailbox is listed twice")
        sessions[mailbox] = session
    if not sessions:
        raise ConfigError("CMA_SESSIONS maps no mailbox to a session")
    return sessions


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}")
    return value


@dataclass(frozen=True)
class AdapterConfig:
    """Everything the adapter needs; `from_env` reads it from the environment once, at start."""

    api_key: str = field(repr=False)
    signing_key: bytes = field(repr=False)
    sessions: Mapping[str, str]
    base_url: str = DEFAULT_BASE_URL
    ephemeral: EphemeralMode = "system"
    # Below chatbox's webhook timeout (CHATBOX_DELIVERY_TIMEOUT_SECONDS, 15 s by default): the adapter gives its
    # answer before chatbox gives up on it, so a retry rarely meets a send still in flight.
    timeout_seconds: float = 10.0
    remember: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AdapterConfig:
        """Raises ConfigError naming the first missing or malformed variable."""
        api_key = environ.get("ANTHROPIC_API_KEY", "").strip()
        if not api_key:
            raise ConfigError("ANTHROPIC_API_KEY is not set")
        secret = environ.get("CMA_SIGNING_SECRET", "").strip()
        if not secret:
            raise ConfigError("CMA_SIGNING_SECRET is not set (the mailbox's hmac_signing credential, whsec_...)")
        try:
            signing_key = decode_signing_secret(secret)
        except InvalidInputError as exc:
            raise ConfigError(f"CMA_SIGNING_SECRET: {exc}") from exc
        base_url = environ.get("ANTHROPIC_BASE_URL", "").strip().rstrip("/") or DEFAULT_BASE_URL
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError("ANTHROPIC_BASE_URL must start with https:// (or http:// for a local stand-in)")
        ephemeral = environ.get("CMA_EPHEMERAL", "system").strip() or "system"
        if ephemeral not in EPHEMERAL_MODES:
            raise ConfigError("CMA_EPHEMERAL must be one of system, user, drop")
        return cls(
            api_key=api_key,
            signing_key=signing_key,
            sessions=parse_session_map(environ.get("CMA_SESSIONS", "")),
            base_url=base_url,
            ephemeral=ephemeral,
            timeout_seconds=_number(environ, "CMA_TIMEOUT_SECONDS", 10.0, 1.0, 300.0),
            remember=int(_number(environ, "CMA_REMEMBER_IDS", 10_000, 1, 10_000_000)),
        )


# --- the webhook: proof and translation ----------------------------------------------------------------------


def verify_signature(
    key: bytes, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: int = TIMESTAMP_TOLERANCE_SECONDS
) -> str:
    """The request's `webhook-id` when one of its `v1,` signatures is HMAC-SHA256(key, "{id}.{timestamp}.{body}")
    and its timestamp is within `tolerance` seconds of `now`; SignatureError otherwise."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signatures):
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature are required")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("webhook-timestamp is not unix seconds")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return webhook_id
    raise SignatureError("no valid v1 signature")


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def session_events(payload: Mapping[str, Any], ephemeral_mode: EphemeralMode) -> list[dict[str, Any]]:
    """The events one chatbox delivery becomes: its `content` as a `user.message`; its `ephemeral`, when present,
    as a `system.message` before it (or a second text block of the user message, or nothing: `ephemeral_mode`)."""
    blocks = [_text(payload["content"])]
    events: list[dict[str, Any]] = []
    ephemeral = payload.get("ephemeral")
    if isinstance(ephemeral, str) and ephemeral.strip():
        if ephemeral_mode == "system":
            events.append({"type": "system.message", "content": [_text(ephemeral)]})
        elif ephemeral_mode == "user":
            blocks.append(_text(ephemeral))
    events.append({"type": "user.message", "content": blocks})
    return events


class SentWebhooks:
    """The `webhook-id`s whose events a session accepted, so a retried delivery is not sent twice.

    Bounded: the newest `capacity` ids are kept in memory (about 100 bytes each). Limits, all of which make a
    retry send its events a second time: a restart forgets every id; an id pushed out by `capacity` newer ones is
    forgotten (chatbox retries a failed delivery for about 25 hours, with the default 8 attempts); replicas behind
    a load balancer do not share what they remember; and a send the API accepted whose answer never reached the
    adapter (a timeout, a dropped connection) counts as failed, so chatbox's retry sends it again.
    Two requests with the same id never send at once: the second waits for the first, then sees its outcome.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def claim(self, webhook_id: str) -> AsyncIterator[bool]:
        """Hold `webhook_id` for the block; yields whether its events were already sent."""
        lock, users = self._in_flight.get(webhook_id, (asyncio.Lock(), 0))
        self._in_flight[webhook_id] = (lock, users + 1)
        try:
            async with lock:
                yield webhook_id in self._sent
        finally:
            lock, users = self._in_flight[webhook_id]
            if users == 1:
                del self._in_flight[webhook_id]
            else:
                self._in_flight[webhook_id] = (lock, users - 1)

    def mark_sent(self, webhook_id: str) -> None:
        self._sent[webhook_id] = None
        self._sent.move_to_end(webhook_id)
        while len(self._sent) > self.capacity:
            self._sent.popitem(last=False)


# --- the app -------------------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def _upstream_error_type(response: httpx.Response) -> str:
    """The API's `error.type` (`rate_limit_error`, `not_found_error`, ...), or `unknown` for a body without one."""
    try:
        body = response.json()
    except ValueError:
        return "unknown"
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,64}", kind) else "unknown"


def _answer_refusal(response: httpx.Response) -> JSONResponse:
    """What chatbox hears when the API did not accept the events: always a failure, so chatbox keeps the delivery."""
    kind = _upstream_error_type(response)
    message = f"the sessions API answered {response.status_code} ({kind})"
    retry_after = response.headers.get("retry-after")
    passed = {"Retry-After": retry_after} if retry_after and retry_after.strip().isdigit() else {}
    if response.status_code == 429 or 500 <= response.status_code <= 599:
        # 529 (overloaded) is not a standard status: 503 is, and chatbox honours Retry-After on it.
        return _error(503 if response.status_code == 529 else response.status_code, message, passed)
    # A refusal a retry cannot cure by itself (a bad key, an unknown or archived session): 502 keeps the delivery
    # failing visibly until the operator fixes it, then redrives.
    return _error(502, message)


@dataclass
class Adapter:
    config: AdapterConfig
    client: httpx.AsyncClient
    sent: SentWebhooks

    async def handle(self, request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, "the body is over 1 MiB")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, "the body is over 1 MiB")
        try:
            webhook_id = verify_signature(self.config.signing_key, request.headers, body, now=time.time())
        except SignatureError as exc:
            logger.warning("refused a webhook: %s", exc)
            return _error(401, "the webhook signature does not verify")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("mailbox_id"), str):
            return _error(400, "the body has no mailbox_id")
        if not isinstance(payload.get("content"), str) or not payload["content"].strip():
            return _error(422, "the body has no content to send")
        mailbox_id = payload["mailbox_id"]
        session_id = self.config.sessions.get(mailbox_id)
        if session_id is None:
            logger.warning("webhook %s: no session is configured for mailbox %s", webhook_id, mailbox_id)
            return _error(404, "no session is configured for this mailbox")
        events = session_events(payload, self.config.ephemeral)
        async with self.sent.claim(webhook_id) as already_sent:
            if already_sent:
                logger.info("webhook %s was already sent to session %s", webhook_id, session_id)
                return JSONResponse({"status": "duplicate", "session_id": session_id})
            try:
                response = await self.client.post(f"/v1/sessions/{session_id}/events", json={"events": events})
            except httpx.TimeoutException:
                logger.warning("webhook %s: the sessions API did not answer in time", webhook_id)
                return _error(504, "the sessions API did not answer in time")
            except httpx.HTTPError as exc:
                logger.warning("webhook %s: the sessions API is unreachable (%s)", webhook_id, type(exc).__name__)
                return _error(502, "the sessions API is unreachable")
            if not response.is_success:
                logger.warning(
                    "webhook %s for session %s: the sessions API answered %d (%s)",
                    webhook_id,
                    session_id,
                    response.status_code,
                    _upstream_error_type(response),
                )
                return _answer_refusal(response)
            self.sent.mark_sent(webhook_id)
        logger.info("webhook %s sent to session %s as %d event(s)", webhook_id, session_id, len(events))
        return JSONResponse({"status": "sent", "session_id": session_id, "event_ids": _event_ids(response)})


def _event_ids(response: httpx.Response) -> list[str]:
    try:
        data = response.json().get("data")
    except (ValueError, AttributeError):
        return []
    return [event["id"] for event in data or [] if isinstance(event, dict) and isinstance(event.get("id"), str)]


def sessions_client(config: AdapterConfig) -> httpx.AsyncClient:
    """The HTTP client for the Managed Agents API: its auth, version and beta headers on every request."""
    return httpx.AsyncClient(
        base_url=config.base_url,
        headers={
            "x-api-key": config.api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "anthropic-beta": MANAGED_AGENTS_BETA,
        },
        timeout=config.timeout_seconds,
        follow_redirects=False,
        # Proxies and CA bundles from the environment are not read: what the adapter talks to is what it says.
        trust_env=False,
    )


def create_app(config: AdapterConfig | None = None) -> Starlette:
    """The adapter app. Without `config` it reads the environment when it starts (`uvicorn` runs the lifespan),
    so a missing or malformed variable stops the process at start with a message naming it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings = config
        if settings is None:
            settings = AdapterConfig.from_env(os.environ)
            # uvicorn configures only its own loggers: without a root handler the adapter's INFO lines are lost.
            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
            install_log_redaction()
            register_secrets([settings.api_key, os.environ.get("CMA_SIGNING_SECRET")])
        async with sessions_client(settings) as client:
            app.state.adapter = Adapter(settings, client, SentWebhooks(settings.remember))
            logger.info("forwarding %d mailbox(es) to %s", len(settings.sessions), settings.base_url)
            yield

    async def webhook(request: Request) -> Response:
        adapter: Adapter = request.app.state.adapter
        return await adapter.handle(request)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/webhook", webhook, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )


app = create_app()
