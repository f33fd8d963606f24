"""The Signal program: follows signal-cli's event stream into the inbox, and serves sends through signal-cli.

Each `receive` event is translated and spooled together with its event id (one transaction), so after
a crash or restart the stream resumes with `Last-Event-ID` right after the last event kept. Events that
carry nothing for the agent move the cursor too. What chatbox has not acknowledged stays in the spool
and is posted again; the idempotency key makes a repeat harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from typing import Any

import aiohttp

from connectors.relay.inbox import Inbox
from connectors.relay.media import AttachmentBody, FileRequest, FileSent, MediaHandlers
from connectors.relay.program import Relay
from connectors.relay.server import SendRequest
from connectors.signal import media
from connectors.signal.rpc import SignalCli, SignalCliUnreachable
from connectors.signal.send import send_message, signal_actions
from connectors.signal.settings import SignalSettings
from connectors.signal.translate import translate_receive

log = logging.getLogger("connectors.signal")

LAST_EVENT_ID = "signal.last_event_id"
FIRST_RECONNECT_SECONDS = 0.5
LONGEST_RECONNECT_SECONDS = 30.0


async def follow_events(cli: SignalCli, inbox: Inbox, stop: asyncio.Event) -> None:
    """Read signal-cli's events into the inbox until `stop`, reconnecting with backoff after any failure."""
    failures = 0
    while not stop.is_set():
        last_event_id = inbox.spool.get_state(LAST_EVENT_ID)
        try:
            log.info("following signal-cli events", extra={"last_event_id": last_event_id})
            async for event in cli.events(last_event_id):
                failures = 0
                await _take(event.id, event.event, event.data, inbox)
            log.warning("signal-cli closed the event stream; reconnecting")
        except (aiohttp.ClientError, TimeoutError, SignalCliUnreachable) as exc:
            log.warning("signal-cli event stream failed; reconnecting", extra={"error": type(exc).__name__})
        except Exception:
            # E.g. the spool's disk is full: the event was not kept, so its cursor did not move; read it again later.
            log.exception("could not keep a signal-cli event; reconnecting")
        failures += 1
        delay = min(LONGEST_RECONNECT_SECONDS, FIRST_RECONNECT_SECONDS * 2 ** min(failures - 1, 10))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))


async def _take(event_id: str | None, event: str, data: str, inbox: Inbox) -> None:
    state = {LAST_EVENT_ID: event_id} if event_id else None
    message = None
    if event == "receive":
        try:
            params: Any = json.loads(data)
        except ValueError:
            log.error("signal-cli sent an event that is not JSON; skipped", extra={"event_id": event_id})
            params = None
        message = translate_receive(params)
    if message is None:
        if state:
            await asyncio.to_thread(inbox.spool.set_state, LAST_EVENT_ID, state[LAST_EVENT_ID])
        return
    new = await inbox.submit(message, state=state)
    log.info(
        "signal message spooled" if new else "signal message seen again",
        extra={"key": message["external_message_id"], "event_id": event_id, "event_type": message.get("event_type")},
    )


async def serve(settings: SignalSettings, stop: asyncio.Event) -> None:
    """The whole program: the relay (spool, inbox, /v1/send, /healthz) and the event follower, until `stop`."""
    async with aiohttp.ClientSession() as session:
        cli = SignalCli(settings.signal_cli_url, session)

        async def send(request: SendRequest) -> str:
            return await send_message(cli, settings.signal_account, request)

        async def health() -> tuple[bool, dict[str, Any]]:
            ok = await cli.check()
            details: dict[str, Any] = {"signal_cli": "ok" if ok else "unreachable", "spool": relay.spool.count()}
            if relay.inbox.last_error:
                details["chatbox"] = relay.inbox.last_error
            return ok, details

        async def send_file(request: FileRequest, data: bytes) -> FileSent:
            return await media.send_file(cli, settings.signal_account, request, data)

        async def open_attachment(attachment_id: str) -> AttachmentBody:
            return await media.open_attachment(settings.signal_attachments_dir, attachment_id)

        handlers = MediaHandlers(send_file=send_file, open_attachment=open_attachment)
        relay = Relay(
            settings,
            send=send,
            health=health,
            media=handlers,
            actions=signal_actions(cli, settings.signal_account),
        )
        async with relay:
            follower = asyncio.create_task(follow_events(cli, relay.inbox, stop), name="signal-events")
            await stop.wait()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
