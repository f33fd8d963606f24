"""The inbox: messages go to the spool first, then a drain task posts them to chatbox in arrival order.

`POST {CHATBOX_API_URL}/v1/connections/{id}/messages` with the inbound token. What happens to a message
after each answer:

| answer | the message | then |
|---|---|---|
| 2xx | removed from the spool | next one |
| 400, 413, 422 | removed, logged with the status: it can never pass | next one |
| 401, 403, 404, 409 | kept: the token, connection or mailbox is wrong, not the message | logged loudly, back off |
| 429 | kept | wait `Retry-After` (or the backoff), retry |
| anything else, timeout, refused | kept | back off (capped exponential, with jitter), retry |

Order is kept: a message that must be retried holds back the ones after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

import aiohttp

from connectors.relay.settings import RelaySettings
from connectors.relay.spool import Spool, SpooledMessage

log = logging.getLogger("connectors.relay.inbox")

POST_TIMEOUT_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.5
LONGEST_RETRY_AFTER_SECONDS = 600.0
_INVALID_MESSAGE = frozenset({400, 413, 422})
_MISCONFIGURED = frozenset({401, 403, 404, 409})


def strip_nul(value: Any) -> Any:
    """`value` with U+0000 removed from every string (chatbox refuses them with 422: the message would be lost)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_nul(v) for v in value]
    return value


class Inbox:
    """Accepts normalized messages (`submit`) and delivers them to chatbox, at least once, in order."""

    def __init__(self, settings: RelaySettings, spool: Spool, *, batch_size: int = 50) -> None:
        self.spool = spool
        self._url = f"{settings.chatbox_api_url}/v1/connections/{settings.chatbox_connection_id}/messages"
        self._headers = {"Authorization": f"Bearer {settings.chatbox_inbound_token.get_secret_value()}"}
        self._longest_wait = settings.connector_retry_max_seconds
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failures = 0
        self.delivered = 0
        self.last_error: str | None = None

    async def submit(self, message: Mapping[str, Any], *, state: Mapping[str, str] | None = None) -> bool:
        """Keep `message` durably (with `state`, in one transaction) and wake the drain; True when it was new.

        Returns only once the spool has it on disk: acknowledge upstream after this, not before.
        """
        new = await asyncio.to_thread(self.spool.put, strip_nul(message), state=state)
        self._wake.set()
        return new

    def start(self) -> None:
        if self._task is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS))
            self._task = asyncio.create_task(self._drain(), name="inbox-drain")

    async def close(self, timeout: float = POST_TIMEOUT_SECONDS) -> None:
        """Stop after the POST in flight (waiting at most `timeout`); what is left stays in the spool."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                await self._drain_once()
            except Exception:
                # The spool itself failed (disk, permissions): nothing was removed, so try again after a while.
                self.last_error = "the spool failed; see the logs"
                log.exception("inbox drain failed; retrying")
                await self._back_off(0.0)

    async def _drain_once(self) -> None:
        self._wake.clear()
        batch = await asyncio.to_thread(self.spool.pending, self._batch_size)
        if not batch:
            await self._wake.wait()
            return
        for item in batch:
            if self._stop.is_set():
                return
            retry_after = await self._deliver(item)
            if retry_after is not None:
                await self._back_off(retry_after)
                return

    async def _deliver(self, item: SpooledMessage) -> float | None:
        """Post one message; None when it left the spool, else how long the server asked to wait (0: no hint)."""
        assert self._session is not None
        key = item.key
        try:
            async with self._session.post(self._url, json=item.message, headers=self._headers) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                detail = (await response.text())[:300] if status >= 300 else ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.last_error = f"chatbox unreachable: {type(exc).__name__}"
            log.warning("chatbox unreachable; message kept", extra={"key": key, "error": type(exc).__name__})
            return 0.0
        if 200 <= status < 300:
            await asyncio.to_thread(self.spool.done, key)
            self._failures = 0
            self.delivered += 1
            self.last_error = None
            log.info("message delivered to chatbox", extra={"key": key, "status": status})
            return None
        if status in _INVALID_MESSAGE:
            await asyncio.to_thread(self.spool.done, key)
            self._failures = 0
            log.error(
                "chatbox refused the message itself; dropped (it can never pass)",
                extra={"key": key, "status": status, "detail": detail},
            )
            return None
        if status in _MISCONFIGURED:
            self.last_error = f"chatbox answered {status}: check CHATBOX_INBOUND_TOKEN and CHATBOX_CONNECTION_ID"
            log.error(
                "chatbox refused this connector (token, connection or mailbox); message kept, retrying",
                extra={"key": key, "status": status, "detail": detail},
            )
            return 0.0
        self.last_error = f"chatbox answered {status}"
        log.warning("chatbox did not take the message; kept, retrying", extra={"key": key, "status": status})
        return retry_after if status == 429 and retry_after is not None else 0.0

    async def _back_off(self, retry_after: float) -> None:
        self._failures += 1
        exponential = min(self._longest_wait, FIRST_RETRY_SECONDS * 2 ** min(self._failures - 1, 30))
        delay = max(min(retry_after, LONGEST_RETRY_AFTER_SECONDS), exponential * random.uniform(0.5, 1.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None
