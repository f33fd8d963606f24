"""The echo connector: verify, parse, provision, deprovision and send, over httpx."""

from __future__ import annotations

import hmac
import json
import secrets

import httpx

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError, PlatformRefusedError
from chatbox.ports.connector import ConnectionContext, OutboundMessage, SentMessage
from chatbox.ports.ingest import (
    IngestOutcome,
    Provisioned,
    ProvisionRequest,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from tests.platforms.echo.spec import EchoSendOptions
from tests.platforms.echo.translate import to_inbound


class EchoConnector:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.client = httpx.Client(timeout=5.0, trust_env=False)

    def verify(self, ctx: ConnectionContext, request: WebhookRequest) -> None:
        presented = request.headers.get("x-echo-token")
        if not presented:
            raise WebhookUnauthenticatedError("missing X-Echo-Token")
        if not hmac.compare_digest(presented.encode(), ctx.secrets.get("webhook_token", "").encode()):
            raise WebhookForbiddenError("wrong X-Echo-Token")

    def parse(self, ctx: ConnectionContext, request: WebhookRequest) -> IngestOutcome:  # noqa: ARG002
        try:
            update = json.loads(request.body)
            message = to_inbound(update)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"not an echo update: {exc}") from exc
        return IngestOutcome(messages=[message], delivery_key=str(update["update"]))

    def provision(self, request: ProvisionRequest) -> Provisioned:
        me = self.client.get(f"{self.api_url}/me", headers={"authorization": f"Bearer {request.secrets['api_key']}"})
        if me.status_code == 401:
            raise InvalidInputError("echo refused secrets.api_key")
        return Provisioned(
            config={"account": me.json()["account"], "webhook_url": request.ingest_url},
            secrets={"webhook_token": secrets.token_urlsafe(16)},
        )

    def deprovision(self, ctx: ConnectionContext) -> None:
        pass

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:
        options = EchoSendOptions.model_validate(msg.options)
        try:
            answer = self.client.post(
                f"{self.api_url}/send",
                json={"chat": msg.chat_id, "text": msg.text, "reply_to": msg.reply_to, "loud": options.loud},
                headers={"authorization": f"Bearer {ctx.secrets['api_key']}"},
            )
        except httpx.HTTPError as exc:
            raise ConnectorUnavailableError(f"echo cannot be reached ({type(exc).__name__})") from exc
        if answer.status_code != 200:
            raise PlatformRefusedError(f"echo refused the message: {answer.text}")
        return SentMessage(str(answer.json()["id"]))

    def close(self) -> None:
        self.client.close()
