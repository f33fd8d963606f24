"""A real WebSocket server on 127.0.0.1 standing in for Slack's Socket Mode side.

`SlackWebApi.apps.connections.open` (tests/support/platforms.py) answers `issue_url()`: a one-use
`ws://127.0.0.1:PORT/link/?ticket=…&app_id=…` URL, as Slack answers a `wss://` one. On a connection the
stand-in sends `hello`, then each event the test pushes as an `events_api` envelope carrying the Events
API body unchanged; it records acknowledgements (`{"envelope_id": …}`), and sends every envelope not yet
acknowledged again on the next connection (with `retry_attempt` raised), as Slack does. `disconnect()`
sends Slack's `{"type": "disconnect", "reason": "refresh_requested"}` and closes that connection soon
after, unless the client did first.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

Json = dict[str, Any]

APP_ID = "A0CHATBOX"
_CLOSE_GRACE = 1.0  # seconds a connection told to disconnect stays open, for the client to leave first


class SocketModeServer:
    def __init__(self) -> None:
        self.tickets_issued = 0
        self.connections = 0
        self.acks: list[str] = []
        self.deliveries: list[tuple[str, int]] = []  # (envelope_id, connection number), in order
        self.refused_tickets = 0
        self._unacked: dict[str, Json] = {}
        self._tickets: set[str] = set()
        self._current: ServerConnection | None = None
        self._current_number = 0
        self._open: set[ServerConnection] = set()
        self._lock = threading.RLock()
        self._server: Server = serve(self._handle, "127.0.0.1", 0, compression=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-socket-mode", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            connection.close()
        self._thread.join(timeout=5)

    # --- what apps.connections.open and the test call ----------------------------------------------

    def issue_url(self) -> str:
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets.add(ticket)
            self.tickets_issued += 1
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"

    def push_event(self, payload: Json) -> str:
        """Sends an Events API body as an `events_api` envelope now (or on the next connection); its envelope id."""
        envelope_id = str(uuid.uuid4())
        envelope: Json = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._lock:
            self._unacked[envelope_id] = envelope
            if self._current is not None:
                self._deliver(self._current, self._current_number, envelope)
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Tells the current connection to go; it is closed after a grace period if the client stays."""
        with self._lock:
            connection, self._current = self._current, None
            if connection is None:
                return
            connection.send(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-1"}}))
        timer = threading.Timer(_CLOSE_GRACE, connection.close)
        timer.daemon = True
        timer.start()

    def acked(self) -> list[str]:
        with self._lock:
            return list(self.acks)

    def delivered(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.deliveries)

    def is_connected(self) -> bool:
        with self._lock:
            return self._current is not None

    # --- the server side -------------------------------------------------------------------------------

    def _handle(self, connection: ServerConnection) -> None:
        request = connection.request
        ticket = parse_qs(urlsplit(request.path if request is not None else "").query).get("ticket", [""])[0]
        with self._lock:
            if ticket not in self._tickets:
                self.refused_tickets += 1
                connection.close(code=1008, reason="invalid ticket")
                return
            self._tickets.discard(ticket)
            self.connections += 1
            number = self.connections
            self._open.add(connection)
            connection.send(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": 1,
                        "debug_info": {"host": "applink-1", "build_number": 1, "approximate_connection_time": 18060},
                        "connection_info": {"app_id": APP_ID},
                    }
                )
            )
            self._current, self._current_number = connection, number
            for envelope in list(self._unacked.values()):
                self._deliver(connection, number, envelope)
        try:
            while True:
                try:
                    raw = connection.recv(timeout=0.1)
                except TimeoutError:
                    continue
                self._on_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._open.discard(connection)
                if self._current is connection:
                    self._current = None

    def _deliver(self, connection: ServerConnection, number: int, envelope: Json) -> None:
        """Called with the lock held."""
        if any(envelope_id == envelope["envelope_id"] for envelope_id, _ in self.deliveries):
            envelope["retry_attempt"] += 1
            envelope["retry_reason"] = "timeout"
        self.deliveries.append((envelope["envelope_id"], number))
        try:
            connection.send(json.dumps(envelope))
        except ConnectionClosed:
            pass  # sent again on the next connection, as it is not acknowledged

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            return
        envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
        with self._lock:
            if isinstance(envelope_id, str) and self._unacked.pop(envelope_id, None) is not None:
                self.acks.append(envelope_id)


@contextmanager
def running_socket_mode() -> Iterator[SocketModeServer]:
    server = SocketModeServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def wait_connected(server: SocketModeServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not server.is_connected():
        if time.monotonic() > deadline:
            raise AssertionError(f"no Socket Mode connection within {timeout}s")
        time.sleep(0.02)
