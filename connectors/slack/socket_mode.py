"""Slack's live source: a connection's events over Socket Mode, for connections without a public URL
(`receive_mode` "socket", chosen by `SlackConnector.provision`).

The wire (https://docs.slack.dev/apis/events-api/using-socket-mode/): `apps.connections.open` with the
app-level token (`xapp-…`) answers a one-use `wss://` URL; on it Slack sends `hello`, then envelopes
`{"type": "events_api", "envelope_id": …, "payload": <the Events API body>}`, each to be acknowledged
with `{"envelope_id": …}` (unacknowledged ones are sent again), and `{"type": "disconnect"}` when the
client should open a new connection (`refresh_requested`, a few hours in).

An envelope's payload goes through the Events API webhook's own translator; the envelope is
acknowledged only after `sink.accept` returned, and a sink that raises is retried with backoff while
the envelope stays unacknowledged (so if chatbox stops meanwhile, Slack sends it again to the next
connection, and the message's `external_message_id` makes the second copy a duplicate).

Example:
    ```python
    source = SlackSocketMode("https://slack.com/api/")
    source.run(ctx, sink, stop)  # returns once `stop` is set; PlatformRefusedError for a revoked app token
    ```
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from chatbox.domain.errors import InvalidInputError, PlatformRefusedError
from chatbox.domain.normalized import InboundMessage
from chatbox.ports.connector import ConnectionContext
from chatbox.ports.live import InboundSink
from connectors.slack.connector import APP_TOKEN, NameCache, SlackClients
from connectors.slack.translate import SlackIdentity, envelope_to_outcome, parse_event_body

log = logging.getLogger(__name__)

# apps.connections.open errors that no retry fixes: the token is wrong, revoked, or not an app-level one.
_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)
_RECV_SLICE = 0.25  # seconds between looks at `stop` while the socket is quiet
_MAX_FRAME = 4 * 1024 * 1024  # an envelope carries one event (Slack's own limit on an event body is far below)


class SlackSocketMode:
    """The Socket Mode loop, one `run` per connection (each on its own thread, with its own socket).

    Args:
        api_root: the Web API root (`CHATBOX_SLACK_API_URL`), where apps.connections.open is called.
        timeout: seconds for the apps.connections.open call and for opening the WebSocket.
        min_backoff / max_backoff: the pause after a failure (network, a refused open, a sink that did
            not commit), doubling up to the maximum while failures repeat.
    """

    def __init__(
        self, api_root: str, *, timeout: int = 10, min_backoff: float = 1.0, max_backoff: float = 30.0
    ) -> None:
        self.api_root = api_root
        self.timeout = timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def run(self, ctx: ConnectionContext, sink: InboundSink, stop: threading.Event) -> None:
        """Connect, accept, acknowledge, reconnect, until `stop` is set.

        Raises:
            PlatformRefusedError: the connection has no app token, or Slack refuses it.
        """
        app_token = ctx.secrets.get(APP_TOKEN)
        if not app_token:
            raise PlatformRefusedError(
                f"the slack connection {ctx.connection_id} has no app_token (xapp-…) for Socket Mode; reconnect it"
            )
        clients = SlackClients(self.api_root, self.timeout)
        session = _Session(ctx, sink, stop, NameCache(clients), self)
        try:
            pause = self.min_backoff
            while not stop.is_set():
                url = self._open(ctx, clients, app_token)
                if url is not None and session.serve(url):
                    pause = self.min_backoff  # a session that said hello resets the backoff
                    continue
                if not stop.is_set():
                    pause = self.wait(stop, pause)
        finally:
            session.names.close()

    def _open(self, ctx: ConnectionContext, clients: SlackClients, app_token: str) -> str | None:
        """The WebSocket URL from apps.connections.open; None after a failure worth retrying."""
        try:
            answer = clients.get(app_token).apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error") or f"HTTP {exc.response.status_code}")
            if error in _REFUSED:
                raise PlatformRefusedError(
                    f"Slack refused the app token of connection {ctx.connection_id} (apps.connections.open: "
                    f"{error}); create a new app-level token (xapp-…, connections:write) and reconnect"
                ) from None
            log.warning("slack connection %s: apps.connections.open failed: %s", ctx.connection_id, error)
            return None
        except (SlackClientError, OSError) as exc:
            log.warning("slack connection %s: apps.connections.open failed: %s", ctx.connection_id, type(exc).__name__)
            return None
        url = answer.get("url")
        return url if isinstance(url, str) and url.startswith(("wss://", "ws://")) else None

    def wait(self, stop: threading.Event, seconds: float) -> float:
        """Waits (until `stop` at most) and answers the next pause, doubled up to `max_backoff`."""
        stop.wait(min(seconds, self.max_backoff))
        return min(max(seconds, self.min_backoff) * 2, self.max_backoff)


class _Session:
    """One connection's WebSocket sessions: reads envelopes, hands events to the sink, acknowledges."""

    def __init__(
        self,
        ctx: ConnectionContext,
        sink: InboundSink,
        stop: threading.Event,
        names: NameCache,
        source: SlackSocketMode,
    ) -> None:
        self.ctx = ctx
        self.sink = sink
        self.stop = stop
        self.names = names
        self.source = source
        self.identity = SlackIdentity(
            bot_user_id=_text(ctx.config.get("bot_user_id")), bot_id=_text(ctx.config.get("bot_id"))
        )

    def serve(self, url: str) -> bool:
        """One WebSocket until Slack asks for a new one, it drops, or `stop`; whether Slack said hello."""
        greeted = False
        try:
            # proxy=None: no proxy from the environment, as chatbox's other platform clients (trust_env=False).
            with connect(
                url, open_timeout=self.source.timeout, close_timeout=2, max_size=_MAX_FRAME, proxy=None
            ) as socket:
                while not self.stop.is_set():
                    try:
                        raw = socket.recv(timeout=_RECV_SLICE)
                    except TimeoutError:
                        continue
                    frame = _frame(raw)
                    kind = frame.get("type")
                    if kind == "hello":
                        greeted = True
                    elif kind == "disconnect":
                        log.info(
                            "slack connection %s: Slack asks to reconnect (%s)",
                            self.ctx.connection_id,
                            frame.get("reason"),
                        )
                        return greeted
                    elif isinstance(frame.get("envelope_id"), str):
                        if not self._handle(socket, frame):
                            return greeted  # stopped with the envelope unacknowledged
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning("slack connection %s: the socket failed: %s", self.ctx.connection_id, type(exc).__name__)
        return greeted

    def _handle(self, socket: ClientConnection, frame: dict[str, Any]) -> bool:
        """Accepts an envelope's messages, then acknowledges it; False when stopped before the accept."""
        messages = self._messages(frame) if frame.get("type") == "events_api" else []
        pause = self.source.min_backoff
        while messages:
            try:
                self.sink.accept(messages)
                break
            except Exception:
                log.warning(
                    "slack connection %s: an event was not accepted; retrying", self.ctx.connection_id, exc_info=True
                )
                if self.stop.is_set():
                    return False
                pause = self.source.wait(self.stop, pause)
                if self.stop.is_set():
                    return False
        # Slash commands and interactions are not chatbox's, but are acknowledged so Slack does not resend them.
        socket.send(json.dumps({"envelope_id": frame["envelope_id"]}))
        return True

    def _messages(self, frame: dict[str, Any]) -> list[InboundMessage]:
        payload = frame.get("payload")
        try:
            # Through the Events API path's parser, so NUL characters and nesting are bounded the same way.
            body = parse_event_body(json.dumps(payload).encode())

            def names(kind: str, item_id: str) -> str | None:
                return self.names.lookup(self.ctx, kind, item_id)

            return list(envelope_to_outcome(body, self.identity, names).messages)
        except (InvalidInputError, TypeError, ValueError) as exc:
            log.warning("slack connection %s: envelope skipped: %s", self.ctx.connection_id, exc)
            return []


def _frame(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
