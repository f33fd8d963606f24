"""Telegram's live source: a connection's updates over getUpdates long polling, for connections without a
public webhook URL (`receive_mode` "polling", chosen by `TelegramConnector.provision`).

Telegram keeps each update until a getUpdates call passes an `offset` beyond its `update_id`, so an update
is confirmed by the next call's offset. The source passes the offset it saved last (`sink.cursor()`),
hands a batch to `sink.accept` through the webhook path's translator, and saves `last update_id + 1` only
after accept returned: a batch that was not committed comes again with the next call.

The long poll runs on a daemon thread of its own while `run` waits on it and on `stop`, so stopping never
waits for Telegram's poll timeout: the abandoned call's answer is dropped unconfirmed, and comes again to
the next source.

Example:
    ```python
    source = TelegramPolling("https://api.telegram.org", poll_timeout=25)
    source.run(ctx, sink, stop)  # returns once `stop` is set; PlatformRefusedError for a revoked token
    ```
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from chatbox.domain.errors import ConnectorUnavailableError, InvalidInputError, PlatformRefusedError
from chatbox.domain.normalized import InboundMessage
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.live import InboundSink
from connectors.telegram.bot_api import BotApiClient, BotApiError
from connectors.telegram.translate import ALLOWED_UPDATES, parse_update_body, update_to_outcome

log = logging.getLogger(__name__)

BOT_TOKEN = "bot_token"
_TOKEN_REFUSED = (401, 404)  # 401: a token Telegram does not know (revoked); 404: a malformed one
_CONFLICT = 409  # another getUpdates call for the same bot, or a webhook is set
_STOP_CHECK = 0.2  # seconds between looks at `stop` while a long poll is out


class TelegramPolling:
    """The getUpdates loop, one `run` per connection (each on its own thread, with its own HTTP client).

    Args:
        api_root: the Bot API root (`CHATBOX_TELEGRAM_API_URL`).
        poll_timeout: seconds Telegram holds a getUpdates call open while no update comes
            (`CHATBOX_TELEGRAM_POLL_TIMEOUT`).
        min_backoff / max_backoff: the pause after a failure (network, 5xx, a sink that did not commit),
            doubling up to the maximum while failures repeat.
    """

    def __init__(
        self, api_root: str, *, poll_timeout: int = 25, min_backoff: float = 1.0, max_backoff: float = 30.0
    ) -> None:
        self.api_root = api_root.rstrip("/")
        self.poll_timeout = poll_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def run(self, ctx: ConnectionContext, sink: InboundSink, stop: threading.Event) -> None:
        """Poll, accept, confirm, until `stop` is set.

        Raises:
            PlatformRefusedError: the connection has no bot token, or Telegram refuses it (revoked).
        """
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise PlatformRefusedError(f"the telegram connection {ctx.connection_id} has no bot_token; reconnect it")
        # The read timeout covers the long poll plus a round trip.
        api = BotApiClient(self.api_root, timeout=self.poll_timeout + 10.0)
        try:
            self._loop(ctx, api, token, sink, stop)
        finally:
            api.close()

    def _loop(
        self, ctx: ConnectionContext, api: BotApiClient, token: str, sink: InboundSink, stop: threading.Event
    ) -> None:
        offset = _offset(sink.cursor())
        pause = self.min_backoff
        while not stop.is_set():
            params: dict[str, Any] = {"timeout": self.poll_timeout, "allowed_updates": list(ALLOWED_UPDATES)}
            if offset is not None:
                params["offset"] = offset
            try:
                answer = _call_until_stopped(api, token, "getUpdates", params, stop)
            except BotApiError as exc:
                wait = self._after_refusal(ctx, api, token, exc)
                pause = self._pause(stop, wait if wait is not None else pause)
                continue
            except ConnectorUnavailableError as exc:
                log.warning("telegram connection %s: getUpdates failed: %s", ctx.connection_id, exc)
                pause = self._pause(stop, pause)
                continue
            if answer is _STOPPED:
                return
            updates = _updates(answer)
            if not updates:
                pause = self.min_backoff
                continue
            messages = _translate(ctx, updates)
            try:
                if messages:
                    sink.accept(messages)
            except Exception:
                # Not committed: the updates stay unconfirmed and come again with the same offset.
                log.warning(
                    "telegram connection %s: %d update(s) not accepted; retrying",
                    ctx.connection_id,
                    len(updates),
                    exc_info=True,
                )
                pause = self._pause(stop, pause)
                continue
            offset = max(update["update_id"] for update in updates) + 1
            pause = self.min_backoff
            try:
                sink.save_cursor(str(offset))
            except Exception:
                # Accepted already; a restart before the next save only fetches duplicates, which accept drops.
                log.warning("telegram connection %s: could not save the offset", ctx.connection_id, exc_info=True)

    def _after_refusal(self, ctx: ConnectionContext, api: BotApiClient, token: str, exc: BotApiError) -> float | None:
        """Raises for a refused token; otherwise the wait before the next poll (None: the current backoff)."""
        if exc.error_code in _TOKEN_REFUSED:
            raise PlatformRefusedError(
                f"Telegram refused the bot token of connection {ctx.connection_id} (getUpdates: {exc.description}); "
                "copy the token from @BotFather again and reconnect"
            ) from None
        if exc.retry_after is not None:
            return exc.retry_after
        if exc.error_code == _CONFLICT and "webhook" in exc.description.lower():
            # Someone set a webhook after provision; this connection receives by polling, so take the updates back.
            log.warning("telegram connection %s: a webhook is set; deleting it to poll", ctx.connection_id)
            try:
                api.call(token, "deleteWebhook", {"drop_pending_updates": False})
            except (BotApiError, ConnectorUnavailableError) as failed:
                log.warning("telegram connection %s: deleteWebhook failed: %s", ctx.connection_id, failed)
            return None
        log.warning("telegram connection %s: getUpdates refused: %s", ctx.connection_id, exc)
        return None

    def _pause(self, stop: threading.Event, seconds: float) -> float:
        """Waits (until `stop` at most) and answers the next pause, doubled up to `max_backoff`."""
        stop.wait(min(seconds, self.max_backoff))
        return min(max(seconds, self.min_backoff) * 2, self.max_backoff)


_STOPPED = object()


def _call_until_stopped(
    api: BotApiClient, token: str, method: str, params: dict[str, Any], stop: threading.Event
) -> Any:
    """`api.call` on a daemon thread; its result, its exception re-raised, or `_STOPPED` once `stop` is set."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def call() -> None:
        try:
            outcome["result"] = api.call(token, method, params)
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread, which re-raises it
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=call, name=f"telegram-{method}", daemon=True).start()
    while not done.wait(_STOP_CHECK):
        if stop.is_set():
            return _STOPPED
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def _updates(answer: Any) -> list[dict[str, Any]]:
    """The updates of a getUpdates answer: objects with an integer update_id (anything else is not one)."""
    if not isinstance(answer, list):
        return []
    return [
        item
        for item in answer
        if isinstance(item, dict) and isinstance(item.get("update_id"), int) and not isinstance(item["update_id"], bool)
    ]


def _translate(ctx: ConnectionContext, updates: Sequence[dict[str, Any]]) -> list[InboundMessage]:
    messages: list[InboundMessage] = []
    for update in updates:
        try:
            # Through the webhook path's parser, so NUL characters and nesting are bounded the same way.
            outcome = update_to_outcome(parse_update_body(json.dumps(update).encode()))
        except InvalidInputError as exc:
            log.warning("telegram connection %s: update %s skipped: %s", ctx.connection_id, update["update_id"], exc)
            continue
        messages.extend(outcome.messages)
    return messages


def _offset(cursor: str | None) -> int | None:
    try:
        return int(cursor) if cursor else None
    except ValueError:
        return None
