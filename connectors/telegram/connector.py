"""The Telegram connector: webhook ingest (secret token), setWebhook/deleteWebhook, and sendMessage via PTB.

python-telegram-bot is asyncio-only while chatbox's services are synchronous, so the connector owns
one private event loop on a daemon thread; every Bot lives and is used on that loop (its HTTP client
is bound to it) and a sync call waits for its coroutine there. Bots are kept per token, so a token
costs one getMe (PTB's `initialize`) per process.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any, TypeVar

# PTB 22 warns on every time period it hands out as an int (RetryAfter included, even while raising it);
# opting into its future timedelta behaviour now silences that and is what its next major version does.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot, Message, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError, PlatformRefusedError, RateLimitedError
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
from connectors.telegram.spec import TelegramSendOptions
from connectors.telegram.translate import (
    ALLOWED_UPDATES,
    message_external_id,
    parse_update_body,
    reply_message_id,
    update_to_outcome,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

PLATFORM = "telegram"
BOT_TOKEN = "bot_token"
WEBHOOK_SECRET = "webhook_secret"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_MESSAGE = 4096  # sendMessage text, in UTF-16 code units


class TelegramConnector:
    """Telegram behind the core's Connector and WebhookPlatform ports.

    Args:
        api_root: the Bot API root (`CHATBOX_TELEGRAM_API_URL`); requests go to `{api_root}/bot{token}/{method}`.
        max_retry_wait: a 429 asking to wait at most this long is waited out and retried once;
            a longer one is reported as RateLimitedError at once.
        timeout: seconds for each Bot API call.
    """

    def __init__(self, api_root: str, *, max_retry_wait: float = 5.0, timeout: float = 10.0) -> None:
        self.api_root = api_root.rstrip("/")
        self.max_retry_wait = max_retry_wait
        self.timeout = timeout
        self._bots: dict[str, Bot] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

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
        return update_to_outcome(parse_update_body(request.body))

    # --- lifecycle ----------------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> Provisioned:
        """getMe to check the token, then setWebhook to the connection's ingest URL with a fresh secret token."""
        token = request.secrets.get(BOT_TOKEN)
        if not token:
            raise InvalidInputError("a telegram connection needs secrets.bot_token (from @BotFather)")
        webhook_secret = secrets.token_urlsafe(32)  # 43 chars of A-Za-z0-9_-
        bot = self._bot(token)

        async def register() -> Provisioned:
            await bot.set_webhook(
                url=request.ingest_url,
                secret_token=webhook_secret,
                allowed_updates=list(ALLOWED_UPDATES),
            )
            me = bot.bot
            config: dict[str, Any] = {"bot_id": me.id, "bot_username": me.username}
            return Provisioned(config=config, secrets={WEBHOOK_SECRET: webhook_secret})

        try:
            return self._call(bot, register)
        except InvalidToken:
            self._forget(token)
            # `from None`: PTB's message quotes the token, which must not reach logs.
            raise InvalidInputError(
                "Telegram refused secrets.bot_token (getMe: Unauthorized): copy the token from @BotFather again"
            ) from None
        except BadRequest as exc:
            raise InvalidInputError(
                f"Telegram refused the webhook URL {request.ingest_url} ({exc.message}): CHATBOX_PUBLIC_URL must be "
                "a public https URL on port 443, 80, 88 or 8443"
            ) from exc
        except TelegramError as exc:
            raise self._unavailable("setWebhook", exc) from exc

    def deprovision(self, connection: ConnectionContext) -> None:
        """deleteWebhook, for a connection whose webhook chatbox registered (it holds a webhook secret)."""
        token = connection.secrets.get(BOT_TOKEN)
        if not token or not connection.secrets.get(WEBHOOK_SECRET):
            return
        bot = self._bot(token)

        async def unregister() -> bool:
            return await bot.delete_webhook()

        try:
            self._call(bot, unregister)
        except TelegramError as exc:
            raise self._unavailable("deleteWebhook", exc) from exc
        finally:
            self._forget(token)

    # --- send ---------------------------------------------------------------------------------

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:
        """sendMessage, split at 4096 UTF-16 units on paragraph, line, then word boundaries; only the
        first part replies to `reply_to`. Returns the first part's id (`"{chat_id}:{message_id}"`)."""
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(
                f"the telegram connection {ctx.connection_id} has no bot_token; reconnect it"
            )
        options = TelegramSendOptions.model_validate(msg.options)
        bot = self._bot(token)
        chat_id: int | str = int(msg.chat_id) if _is_int(msg.chat_id) else msg.chat_id
        reply_id = reply_message_id(msg.reply_to) if msg.reply_to else None
        parts = split_text(msg.text, MAX_MESSAGE, utf16_length)
        first_id: str | None = None
        for index, part in enumerate(parts):
            reply = (
                ReplyParameters(message_id=reply_id, allow_sending_without_reply=True)
                if reply_id is not None and index == 0
                else None
            )

            def send_part(part: str = part, reply: ReplyParameters | None = reply) -> Coroutine[Any, Any, Message]:
                return bot.send_message(
                    chat_id=chat_id,
                    text=part,
                    reply_parameters=reply,
                    parse_mode=options.parse_mode,
                    disable_notification=options.disable_notification,
                )

            sent = self._send_with_retry(bot, send_part, msg.chat_id, token)
            if first_id is None:
                first_id = message_external_id(sent.chat.id, sent.message_id)
        assert first_id is not None  # split_text of a non-blank text yields at least one part
        return SentMessage(first_id)

    def _send_with_retry(
        self, bot: Bot, make: Callable[[], Coroutine[Any, Any, Message]], chat: str, token: str
    ) -> Message:
        for attempt in (1, 2):
            try:
                return self._call(bot, make)
            except RetryAfter as exc:
                period = exc.retry_after
                wait = period.total_seconds() if isinstance(period, timedelta) else float(period)
                if attempt == 1 and wait <= self.max_retry_wait:
                    time.sleep(wait)
                    continue
                raise RateLimitedError(
                    f"Telegram rate limit for chat {chat}: wait {wait:g}s before sending again", wait
                ) from exc
            except ChatMigrated as exc:
                raise PlatformRefusedError(
                    f"the Telegram group {chat} became a supergroup with id {exc.new_chat_id}; "
                    f"send to telegram:{exc.new_chat_id} instead"
                ) from exc
            except Forbidden as exc:
                raise PlatformRefusedError(
                    f"Telegram refused the message to chat {chat}: {exc.message}. The user blocked the bot, or "
                    "the bot is no longer in that chat; it can write again once the user restarts it (/start) "
                    "or the bot is added back"
                ) from exc
            except InvalidToken:
                self._forget(token)
                raise ConnectorUnavailableError(
                    "Telegram no longer accepts this connection's bot token; the operator must reconnect the bot"
                ) from None
            except BadRequest as exc:
                raise PlatformRefusedError(
                    f"Telegram refused the message to chat {chat}: {exc.message}. Check the chat id (the bot can "
                    "only write to chats it is in, or users who started it) and the text"
                ) from exc
            except TelegramError as exc:
                raise self._unavailable("sendMessage", exc) from exc
        raise AssertionError("unreachable")

    # --- the private event loop ---------------------------------------------------------------

    def _bot(self, token: str) -> Bot:
        with self._lock:
            bot = self._bots.get(token)
            if bot is None:
                request = HTTPXRequest(
                    connection_pool_size=16,
                    read_timeout=self.timeout,
                    write_timeout=self.timeout,
                    connect_timeout=self.timeout,
                )
                bot = Bot(token, base_url=f"{self.api_root}/bot", request=request)
                self._bots[token] = bot
            return bot

    def _forget(self, token: str) -> None:
        with self._lock:
            bot = self._bots.pop(token, None)
        if bot is not None and self._loop is not None and not self._closed:
            self._submit(bot.shutdown).result(timeout=self.timeout)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise ConnectorUnavailableError("the telegram connector is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="telegram-connector", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _submit(self, make: Callable[[], Coroutine[Any, Any, T]]) -> Any:
        return asyncio.run_coroutine_threadsafe(make(), self._ensure_loop())

    def _call(self, bot: Bot, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one Bot API interaction on the private loop, after `bot.initialize()` (getMe the first time)."""

        async def run() -> T:
            await bot.initialize()
            return await make()

        future = self._submit(run)
        try:
            result: T = future.result(timeout=self.timeout * 3)
        except FutureTimeout as exc:
            future.cancel()
            raise ConnectorUnavailableError("Telegram did not answer in time; try again later") from exc
        return result

    @staticmethod
    def _unavailable(method: str, exc: TelegramError) -> ConnectorUnavailableError:
        if isinstance(exc, TimedOut):
            return ConnectorUnavailableError(f"Telegram did not answer {method} in time; try again later")
        if isinstance(exc, NetworkError):
            return ConnectorUnavailableError(f"Telegram cannot be reached ({exc.message}); try again later")
        return ConnectorUnavailableError(f"Telegram failed {method} ({exc.message}); try again later")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            bots, self._bots = list(self._bots.values()), {}
            loop, thread = self._loop, self._thread
        if loop is None:
            return

        async def shutdown() -> None:
            for bot in bots:
                try:
                    await bot.shutdown()
                except TelegramError:
                    log.debug("telegram bot shutdown failed", exc_info=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=self.timeout)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=self.timeout)
        loop.close()


def _is_int(value: str) -> bool:
    return value.lstrip("-").isdigit()
