"""The Telegram connector: webhook ingest (secret token), and getMe/setWebhook/deleteWebhook/sendMessage
over a small synchronous Bot API client (`connectors.telegram.bot_api`).

chatbox's services are synchronous and call connectors from worker threads, so the outbound side is plain
blocking HTTP (one pooled `httpx.Client` per connector): no event loop, no thread of its own. Inbound
updates are parsed by `translate` (pydantic models of the update, `updates`; no network).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from chatbox.domain.addresses import is_public_https_url
from chatbox.domain.errors import (
    ConnectorError,
    ConnectorUnavailableError,
    InvalidInputError,
    PlatformRefusedError,
    RateLimitedError,
    UnknownOutcomeError,
)
from chatbox.domain.message_split import split_text, utf16_length
from chatbox.ports.connector import ConnectionContext, OutboundMessage, SentMessage
from chatbox.ports.ingest import (
    IngestOutcome,
    Provisioned,
    ProvisionRequest,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from chatbox.ports.live import RECEIVE_MODE, WEBHOOK_RECEIVE
from chatbox.ports.media import FetchedFile, FileRef, OutboundFile, SentFile, UploadLimit
from chatbox.ports.message_actions import MessageRef
from chatbox.ports.probe import ProbeResult
from connectors.telegram import media
from connectors.telegram.bot_api import BotApiClient, BotApiError
from connectors.telegram.spec import TelegramMode, TelegramSendOptions
from connectors.telegram.translate import (
    ALLOWED_UPDATES,
    body_to_outcome,
    message_external_id,
    reply_message_id,
)

PLATFORM = "telegram"
BOT_TOKEN = "bot_token"
WEBHOOK_SECRET = "webhook_secret"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_MESSAGE = 4096  # sendMessage text, in UTF-16 code units
_TOKEN_REFUSED = (401, 404)  # 401: a well-formed token Telegram does not know; 404: a malformed one
POLLING_RECEIVE = "polling"


def receive_mode_for(mode: TelegramMode, ingest_url: str) -> str:
    """`webhook` or `polling` for a new connection: `auto` polls unless Telegram could push to the ingest URL."""
    if mode == "auto":
        return WEBHOOK_RECEIVE if is_public_https_url(ingest_url) else POLLING_RECEIVE
    return WEBHOOK_RECEIVE if mode == "webhook" else POLLING_RECEIVE


class TelegramConnector:
    """Telegram behind the core's Connector and WebhookPlatform ports. Thread-safe.

    Args:
        api_root: the Bot API root (`CHATBOX_TELEGRAM_API_URL`); requests go to `{api_root}/bot{token}/{method}`.
        max_retry_wait: a 429 asking to wait at most this long is waited out and retried once;
            a longer one is reported as RateLimitedError at once.
        timeout: seconds for each phase of a Bot API call (connect, write, read).
        mode: how new connections receive updates (`CHATBOX_TELEGRAM_MODE`, see `receive_mode_for`).
    """

    def __init__(
        self, api_root: str, *, max_retry_wait: float = 5.0, timeout: float = 10.0, mode: TelegramMode = "auto"
    ) -> None:
        self.api_root = api_root.rstrip("/")
        self.mode = mode
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        self._api = BotApiClient(self.api_root, timeout=timeout)

    # --- ingest -------------------------------------------------------------------------------

    def verify(self, connection: ConnectionContext, request: WebhookRequest) -> None:
        """Compare `X-Telegram-Bot-Api-Secret-Token` with the secret chatbox registered, in constant time."""
        presented = request.headers.get(SECRET_HEADER)
        if not presented:
            raise WebhookUnauthenticatedError("missing X-Telegram-Bot-Api-Secret-Token")
        expected = connection.secrets.get(WEBHOOK_SECRET)
        if not expected:
            raise WebhookUnauthenticatedError("this connection has no webhook secret: resync it")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise WebhookForbiddenError("wrong X-Telegram-Bot-Api-Secret-Token")

    def parse(self, connection: ConnectionContext, request: WebhookRequest) -> IngestOutcome:  # noqa: ARG002
        return body_to_outcome(request.body)

    # --- lifecycle ----------------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> Provisioned:
        """getMe to check the token and learn the bot's id and username, then, in webhook mode, setWebhook to
        the connection's ingest URL with a fresh secret token; in polling mode deleteWebhook instead (getUpdates
        refuses to run while a webhook is set), and the live source fetches the updates.

        Raises:
            InvalidInputError: no token, a token Telegram refuses, or a webhook URL it refuses.
            ConnectorUnavailableError: Telegram cannot be reached or fails.
        """
        token = request.secrets.get(BOT_TOKEN)
        if not token:
            raise InvalidInputError("a telegram connection needs secrets.bot_token (from @BotFather)")
        receive = receive_mode_for(self.mode, request.ingest_url)
        me = self._provision_call(request, token, "getMe", {})
        if not isinstance(me, dict) or not _is_int(me.get("id")):
            raise ConnectorUnavailableError("Telegram answered getMe without the bot's id; try again later")
        username = me.get("username")
        config: dict[str, Any] = {
            "bot_id": me["id"],
            "bot_username": username if isinstance(username, str) else None,
            RECEIVE_MODE: receive,
        }
        if receive == POLLING_RECEIVE:
            # Updates already waiting stay queued: getUpdates delivers them after the webhook is gone.
            self._provision_call(request, token, "deleteWebhook", {"drop_pending_updates": False})
            return Provisioned(config=config)
        webhook_secret = secrets.token_urlsafe(32)  # 43 chars of A-Za-z0-9_-
        self._provision_call(
            request,
            token,
            "setWebhook",
            {"url": request.ingest_url, "secret_token": webhook_secret, "allowed_updates": list(ALLOWED_UPDATES)},
        )
        return Provisioned(config=config, secrets={WEBHOOK_SECRET: webhook_secret})

    def _provision_call(self, request: ProvisionRequest, token: str, method: str, params: dict[str, Any]) -> Any:
        try:
            return self._api.call(token, method, params)
        except BotApiError as exc:
            if exc.error_code in _TOKEN_REFUSED:
                # `from None`: the cause adds nothing the message lacks (the message names no token either).
                raise InvalidInputError(
                    f"Telegram refused secrets.bot_token ({method}: {exc.description}): copy the token from "
                    "@BotFather again"
                ) from None
            if method == "setWebhook" and exc.error_code == 400:
                raise InvalidInputError(
                    f"Telegram refused the webhook URL {request.ingest_url} ({_detail(exc)}): CHATBOX_PUBLIC_URL "
                    "must be a public https URL on port 443, 80, 88 or 8443, or set "
                    "CHATBOX_TELEGRAM_MODE=polling"
                ) from exc
            raise _failed(exc) from exc

    def deprovision(self, connection: ConnectionContext) -> None:
        """deleteWebhook, for a connection whose webhook chatbox registered (it holds a webhook secret).

        Raises:
            ConnectorUnavailableError: Telegram cannot be reached, refuses the token or fails (the caller logs it).
        """
        token = connection.secrets.get(BOT_TOKEN)
        if not token or not connection.secrets.get(WEBHOOK_SECRET):
            return
        try:
            self._api.call(token, "deleteWebhook", {})
        except BotApiError as exc:
            raise _failed(exc) from exc

    # --- probe (chatbox doctor) ----------------------------------------------------------------

    def check(self, ctx: ConnectionContext, *, ingest_url: str) -> list[ProbeResult]:
        """getMe (the token works), then getWebhookInfo: in webhook mode its URL must be `ingest_url`; in polling
        mode it must be empty (getUpdates refuses to run while a webhook is set)."""
        token = ctx.secrets.get(BOT_TOKEN, "")
        try:
            me = self._api.call(token, "getMe", {})
            info = self._api.call(token, "getWebhookInfo", {})
        except BotApiError as exc:
            fix = (
                "copy the token from @BotFather and PATCH the connection's secrets.bot_token"
                if exc.error_code in _TOKEN_REFUSED
                else "check Telegram's status, then run the doctor again"
            )
            return [ProbeResult("telegram token", "fail", f"Telegram refused {exc.method}: {exc.description}", fix)]
        except ConnectorUnavailableError as exc:
            return [
                ProbeResult("telegram token", "fail", exc.message, "check CHATBOX_TELEGRAM_API_URL and the network")
            ]
        username = me.get("username") if isinstance(me, dict) else None
        results = [ProbeResult("telegram token", "ok", f"getMe answers @{username}")]
        registered = info.get("url", "") if isinstance(info, dict) else ""
        polling = ctx.config.get(RECEIVE_MODE) == POLLING_RECEIVE
        expected = "" if polling else ingest_url
        if registered == expected:
            detail = "no webhook set (polling)" if polling else f"webhook is {registered}"
            results.append(ProbeResult("telegram webhook", "ok", detail))
        else:
            results.append(
                ProbeResult(
                    "telegram webhook",
                    "fail",
                    f"webhook is {registered or 'unset'}, expected {expected or 'none (polling)'}",
                    f"run `chatbox operator connection-resync {ctx.connection_id}`",
                )
            )
        return results

    # --- send ---------------------------------------------------------------------------------

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:
        """sendMessage, split at 4096 UTF-16 units on paragraph, line, then word boundaries; only the
        first part replies to `reply_to` (as `reply_parameters`). Returns the first part's id
        (`"{chat_id}:{message_id}"`) and every part's. Parts in `msg.parts_sent` are not sent again.

        Raises:
            PlatformRefusedError: the chat is unknown, blocked the bot, moved to a supergroup, or the text is refused.
            RateLimitedError: Telegram asks to wait longer than `max_retry_wait`, or again after one wait.
            ConnectorUnavailableError: no token, a token Telegram no longer accepts, or Telegram unreachable.
            UnknownOutcomeError: a sendMessage left and got no answer (Telegram has no lookup: chatbox cannot tell),
                or `msg.uncertain_since` asks about such a part.
        """
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(
                f"the telegram connection {ctx.connection_id} has no bot_token; reconnect it"
            )
        options = TelegramSendOptions.model_validate(msg.options)
        chat_id: int | str = int(msg.chat_id) if _is_int_text(msg.chat_id) else msg.chat_id
        reply_id = reply_message_id(msg.reply_to) if msg.reply_to else None
        parts = split_text(msg.text, MAX_MESSAGE, utf16_length)
        ids = list(msg.parts_sent[: len(parts)])
        if msg.uncertain_since is not None and len(ids) < len(parts):
            # The Bot API has no way to look a sent message up (no history for bots): never guess, never resend.
            raise _progress(
                UnknownOutcomeError(
                    f"an earlier attempt at this message got no answer from Telegram, which offers no way to look "
                    f"a sent message up: whether part {len(ids) + 1} reached chat {msg.chat_id} is unknown - "
                    "check the chat before resending it under a new key"
                ),
                ids,
                len(parts),
            )
        for index in range(len(ids), len(parts)):
            params: dict[str, Any] = {
                "chat_id": chat_id,
                "text": parts[index],
                "disable_notification": options.disable_notification,
            }
            if options.parse_mode is not None:
                params["parse_mode"] = options.parse_mode
            if reply_id is not None and index == 0:
                params["reply_parameters"] = {"message_id": reply_id, "allow_sending_without_reply": True}
            try:
                sent = self._send_part(token, msg.chat_id, params)
                ids.append(_sent_message_id(sent))
            except ConnectorError as exc:
                raise _progress(exc, ids, len(parts)) from exc.__cause__
        return SentMessage(ids[0], tuple(ids))

    def _send_part(self, token: str, chat: str, params: dict[str, Any]) -> Any:
        for attempt in (1, 2):
            try:
                return self._api.call(token, "sendMessage", params, acts=True)
            except BotApiError as exc:
                wait = exc.retry_after
                if wait is not None and exc.migrate_to_chat_id is None and attempt == 1 and wait <= self.max_retry_wait:
                    # The one sleep in this connector: `send` runs on a worker thread (services are synchronous),
                    # and the wait is bounded by max_retry_wait (5 s by default), so the caller gets the message
                    # sent instead of a RateLimitedError for a pause shorter than a round trip through the agent.
                    time.sleep(wait)
                    continue
                raise _send_error(exc, chat) from exc
        raise AssertionError("unreachable")

    # --- media (chatbox.ports.media) ----------------------------------------------------------

    def fetch_attachment(self, ctx: ConnectionContext, ref: FileRef, *, max_bytes: int) -> FetchedFile:
        """getFile, then the file download URL, streamed (see `connectors.telegram.media`)."""
        token = media.require_token(ctx, ctx.secrets.get(BOT_TOKEN))
        return media.fetch_attachment(self._api, token, ref, max_bytes=max_bytes)

    def upload_limit(self, ctx: ConnectionContext, mime_type: str) -> UploadLimit:  # noqa: ARG002
        return media.upload_limit(mime_type)

    def send_file(self, ctx: ConnectionContext, file: OutboundFile) -> SentFile:
        """sendPhoto or sendDocument (multipart), replying to `reply_to` like `send`; errors as `send`'s."""
        token = media.require_token(ctx, ctx.secrets.get(BOT_TOKEN))
        reply_id = reply_message_id(file.reply_to) if file.reply_to else None
        try:
            sent, method = media.send_file(self._api, token, file, reply_id)
        except BotApiError as exc:
            raise media.refused_file(exc) or _send_error(exc, file.chat_id) from exc
        chat = sent.get("chat") if isinstance(sent, dict) else None
        if not isinstance(chat, dict) or not _is_int(chat.get("id")) or not _is_int(sent.get("message_id")):
            raise ConnectorUnavailableError(f"Telegram answered {method} without a message id; try again later")
        return media.sent_file(sent, message_external_id(chat["id"], sent["message_id"]))

    # --- message actions (chatbox.ports.message_actions) ------------------------------------------

    action_notes = (
        "Telegram tells bots nothing of deletions, and sends reactions only in groups and channels where the bot is "
        "an administrator (none from private chats); a bot can delete its messages for 48 hours after sending."
    )

    def edit_message(self, ctx: ConnectionContext, target: MessageRef, text: str) -> None:
        """editMessageText (4096 characters at most: a longer text is refused, not split)."""
        if utf16_length(text) > MAX_MESSAGE:
            raise PlatformRefusedError(f"Telegram messages hold {MAX_MESSAGE} characters at most; shorten the text")
        self._action(ctx, "editMessageText", {**self._message_params(target), "text": text}, target.chat_id)

    def delete_message(self, ctx: ConnectionContext, target: MessageRef) -> None:
        self._action(ctx, "deleteMessage", self._message_params(target), target.chat_id)

    def react(self, ctx: ConnectionContext, target: MessageRef, emoji: str, *, remove: bool) -> None:
        """setMessageReaction: a bot has one reaction per message, so removing clears it and adding replaces it."""
        reaction = [] if remove else [{"type": "emoji", "emoji": emoji}]
        self._action(ctx, "setMessageReaction", {**self._message_params(target), "reaction": reaction}, target.chat_id)

    def send_typing(self, ctx: ConnectionContext, chat_id: str) -> None:
        """sendChatAction `typing` (Telegram shows it for 5 seconds or until the bot's next message)."""
        self._action(ctx, "sendChatAction", {"chat_id": _chat_param(chat_id), "action": "typing"}, chat_id)

    @staticmethod
    def _message_params(target: MessageRef) -> dict[str, Any]:
        message_id = reply_message_id(target.message_id)
        if message_id is None:
            raise PlatformRefusedError(f"{target.message_id} is not a Telegram message id")
        return {"chat_id": _chat_param(target.chat_id), "message_id": message_id}

    def _action(self, ctx: ConnectionContext, method: str, params: dict[str, Any], chat: str) -> None:
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(
                f"the telegram connection {ctx.connection_id} has no bot_token; reconnect it"
            )
        try:
            self._api.call(token, method, params)
        except BotApiError as exc:
            raise _send_error(exc, chat) from exc

    def close(self) -> None:
        self._api.close()


def _chat_param(chat_id: str) -> int | str:
    return int(chat_id) if _is_int_text(chat_id) else chat_id


def _progress(exc: ConnectorError, ids: list[str], total: int) -> ConnectorError:
    """`exc` saying which leading parts went out before it (`ConnectorError.parts_sent`)."""
    exc.parts_sent = tuple(ids)
    exc.parts_total = total
    return exc


def _send_error(exc: BotApiError, chat: str) -> ConnectorError:
    """What an `ok: false` answer to sendMessage means for the agent (the order is Telegram's: parameters first)."""
    if exc.migrate_to_chat_id is not None:
        return PlatformRefusedError(
            f"the Telegram group {chat} became a supergroup with id {exc.migrate_to_chat_id}; "
            f"send to telegram:{exc.migrate_to_chat_id} instead"
        )
    if exc.retry_after is not None or exc.error_code == 429:
        wait = exc.retry_after
        advice = f"wait {wait:g}s before sending again" if wait is not None else "slow down"
        return RateLimitedError(f"Telegram rate limit for chat {chat}: {advice}", wait)
    if exc.error_code in _TOKEN_REFUSED:
        return ConnectorUnavailableError(
            "Telegram no longer accepts this connection's bot token; the operator must reconnect the bot"
        )
    if exc.error_code == 403:
        return PlatformRefusedError(
            f"Telegram refused the message to chat {chat}: {_detail(exc)}. The user blocked the bot, or "
            "the bot is no longer in that chat; it can write again once the user restarts it (/start) "
            "or the bot is added back"
        )
    if exc.error_code == 400:
        return PlatformRefusedError(
            f"Telegram refused the message to chat {chat}: {_detail(exc)}. Check the chat id (the bot can "
            "only write to chats it is in, or users who started it) and the text"
        )
    return _failed(exc)


def _failed(exc: BotApiError) -> ConnectorUnavailableError:
    return ConnectorUnavailableError(f"Telegram failed {exc.method} ({exc.description}); try again later")


def _detail(exc: BotApiError) -> str:
    """Telegram's description without its status prefix: "Bad Request: chat not found" -> "Chat not found"."""
    text = exc.description
    for prefix in ("Bad Request: ", "Forbidden: "):
        text = text.removeprefix(prefix)
    return text[:1].upper() + text[1:]


def _sent_message_id(sent: Any) -> str:
    chat = sent.get("chat") if isinstance(sent, dict) else None
    if not isinstance(chat, dict) or not _is_int(chat.get("id")) or not _is_int(sent.get("message_id")):
        raise ConnectorUnavailableError("Telegram answered sendMessage without a message id; try again later")
    return message_external_id(chat["id"], sent["message_id"])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_int_text(value: str) -> bool:
    return value.lstrip("-").isdigit()
