"""A stand-in for signal-cli's HTTP daemon on 127.0.0.1, speaking its wire format.

- `POST /api/v1/rpc`: JSON-RPC 2.0. `send` is recorded and answered `{"timestamp", "results": [...]}`
  with a fresh timestamp, or with the next scripted answer (`fail_next` / `answer_next`), e.g. signal-cli's
  `{"code": -1, "message": ...}` user error or a result holding an UNREGISTERED_FAILURE.
- `GET /api/v1/events`: Server-Sent Events as signal-cli writes them (`id:<start>-<seq>`, `event:receive`,
  `data:<params JSON>`), keeping every event: a client sending `Last-Event-ID` first gets the events after
  it (all of them for an id it does not know), then live ones; keep-alive comments meanwhile.
- `GET /api/v1/check`: 200.

It runs its own event loop in a thread, so tests drive it from plain synchronous code. Run as a program
(`python -m tests.support.signal_cli [--config DIR] -a ACCOUNT daemon --http HOST:PORT`, signal-cli's own
arguments) it serves until SIGTERM, standing in for the real executable in the container's entrypoint.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

KEEP_ALIVE_SECONDS = 1.0
_ACTION_METHODS = frozenset({"remoteDelete", "sendReaction", "sendTyping"})


class SignalCliStandIn:
    def __init__(self, account: str) -> None:
        self.account = account
        self.sends: list[dict[str, Any]] = []
        self.actions: list[tuple[str, dict[str, Any]]] = []  # remoteDelete / sendReaction / sendTyping calls
        self.scripted: list[dict[str, Any]] = []
        self.event_stream_requests: list[str | None] = []  # the Last-Event-ID of each connection
        self.send_delay = 0.0  # seconds a `send` takes after it is recorded (a slow network)
        self._events: list[str] = []
        self._id_prefix = f"{int(time.time() * 1000)}-"
        self._next_timestamp = 1764170419456
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._changed: asyncio.Condition | None = None
        self._streams: dict[int, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    # --- driving it from a test ---------------------------------------------------------------------------

    def push(self, params: dict[str, Any]) -> str:
        """Emit one `receive` event (its `params`); returns its event id."""
        event_id: str = self._call(self._push(json.dumps(params, ensure_ascii=False)))
        return event_id

    def fail_next(self, code: int, message: str, data: Any = None) -> None:
        """The next `send` answers this JSON-RPC error."""
        with self._lock:
            self.scripted.append({"error": {"code": code, "message": message, "data": data}})

    def answer_next(self, result: dict[str, Any]) -> None:
        with self._lock:
            self.scripted.append({"result": result})

    def drop_event_streams(self) -> None:
        """Cut every open event stream, as a daemon restart or a network blip would."""
        self._call(self._drop())

    # --- the server ---------------------------------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/api/v1/rpc", self._rpc)
        app.router.add_get("/api/v1/events", self._events_stream)
        app.router.add_get("/api/v1/check", self._check)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        await self._drop()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _push(self, data: str) -> str:
        assert self._changed is not None
        async with self._changed:
            self._events.append(data)
            self._changed.notify_all()
            return f"{self._id_prefix}{len(self._events)}"

    async def _drop(self) -> None:
        for request in list(self._streams.values()):
            if request.transport is not None:
                request.transport.close()
        self._streams.clear()

    async def _check(self, _request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _rpc(self, request: web.Request) -> web.Response:
        try:
            call = json.loads(await request.read())
        except ValueError:
            return web.json_response(
                {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error", "data": None}, "id": None}
            )
        call_id = call.get("id")
        if call.get("method") in _ACTION_METHODS:
            return web.json_response(self._action(call))
        if call.get("method") != "send":
            return web.json_response(
                {
                    "jsonrpc": "2.0",
                    "error": {"code": -32601, "message": "Method not implemented", "data": None},
                    "id": call_id,
                }
            )
        params = call.get("params") or {}
        for attachment in params.get("attachments") or []:
            # signal-cli takes a file path or an RFC 2397 data URI (`data:<type>;filename=<name>;base64,<data>`);
            # the stand-in has no files, so only data URIs it can decode pass.
            if not _decodes_as_data_uri(attachment):
                error = {"code": -1, "message": f"Failed to send message: {attachment[:40]} (No such file)"}
                return web.json_response({"jsonrpc": "2.0", "error": {**error, "data": None}, "id": call_id})
        with self._lock:
            self.sends.append(params)
            scripted = self.scripted.pop(0) if self.scripted else None
            self._next_timestamp += 1
            timestamp = self._next_timestamp
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        if scripted is not None:
            return web.json_response({"jsonrpc": "2.0", **scripted, "id": call_id})
        recipients = params.get("recipient") or [None]
        results = [
            {
                "recipientAddress": {"uuid": None, "number": number, "username": None},
                **({"groupId": params["groupId"]} if "groupId" in params else {}),
                "type": "SUCCESS",
            }
            for number in recipients
        ]
        return web.json_response(
            {"jsonrpc": "2.0", "result": {"timestamp": timestamp, "results": results}, "id": call_id}
        )

    def _action(self, call: dict[str, Any]) -> dict[str, Any]:
        """remoteDelete, sendReaction, sendTyping: recorded in `actions` as (method, params); signal-cli checks
        that a chat is named and the target is given, and answers a timestamp and per-recipient results."""
        method, params = str(call.get("method")), call.get("params") or {}
        with self._lock:
            self.actions.append((method, params))
            self._next_timestamp += 1
            timestamp = self._next_timestamp
        needed = {"remoteDelete": ("targetTimestamp",), "sendReaction": ("emoji", "targetAuthor", "targetTimestamp")}
        missing = [name for name in needed.get(method, ()) if name not in params]
        if missing or not (params.get("recipient") or params.get("groupId")):
            error = {"code": -32602, "message": f"Invalid params: missing {missing or 'recipient'}", "data": None}
            return {"jsonrpc": "2.0", "error": error, "id": call.get("id")}
        if method == "sendTyping":
            return {"jsonrpc": "2.0", "result": {}, "id": call.get("id")}
        results = [{"recipientAddress": {"number": n}, "type": "SUCCESS"} for n in params.get("recipient") or [None]]
        return {"jsonrpc": "2.0", "result": {"timestamp": timestamp, "results": results}, "id": call.get("id")}

    def _position_after(self, last_event_id: str | None) -> int:
        if last_event_id is None:
            return len(self._events)
        if last_event_id.startswith(self._id_prefix) and last_event_id[len(self._id_prefix) :].isdigit():
            return min(int(last_event_id[len(self._id_prefix) :]), len(self._events))
        return 0  # an id from another run: everything kept

    async def _events_stream(self, request: web.Request) -> web.StreamResponse:
        assert self._changed is not None
        last_event_id = request.headers.get("Last-Event-ID")
        self.event_stream_requests.append(last_event_id)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        self._streams[id(request)] = request
        sent = self._position_after(last_event_id)
        try:
            while True:
                async with self._changed:
                    if sent >= len(self._events):
                        try:
                            await asyncio.wait_for(self._changed.wait(), KEEP_ALIVE_SECONDS)
                        except TimeoutError:
                            pass
                    pending = self._events[sent:]
                if not pending:
                    await response.write(b":\n")
                for data in pending:
                    sent += 1
                    await response.write(f"id:{self._id_prefix}{sent}\nevent:receive\ndata:{data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.pop(id(request), None)
        return response


def _decodes_as_data_uri(value: object) -> bool:
    if not isinstance(value, str) or not value.startswith("data:") or ";base64," not in value:
        return False
    try:
        base64.b64decode(value.split(";base64,", 1)[1], validate=True)
    except ValueError:
        return False
    return True


def decode_data_uri(value: str) -> tuple[str, str | None, bytes]:
    """(MIME type, filename, bytes) of a data URI attachment as the stand-in received it."""
    head, _, data = value.removeprefix("data:").partition(";base64,")
    mime, *fields = head.split(";")
    names = [f.removeprefix("filename=") for f in fields if f.startswith("filename=")]
    return mime, names[0] if names else None, base64.b64decode(data)


@contextmanager
def running_signal_cli(account: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[SignalCliStandIn]:
    stand_in = SignalCliStandIn(account)
    stand_in._thread.start()
    stand_in.url = stand_in._call(stand_in._start(host, port))
    try:
        yield stand_in
    finally:
        stand_in._call(stand_in._stop())
        stand_in._loop.call_soon_threadsafe(stand_in._loop.stop)
        stand_in._thread.join(timeout=10)
        stand_in._loop.close()


def main(argv: list[str]) -> None:
    """signal-cli's command line, as the container's entrypoint calls it."""
    parser = argparse.ArgumentParser(prog="signal-cli")
    parser.add_argument("--config")
    parser.add_argument("-a", dest="account", required=True)
    parser.add_argument("command", choices=["daemon"])
    parser.add_argument("--http", required=True)
    args = parser.parse_args(argv)
    host, _, port = args.http.rpartition(":")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with running_signal_cli(args.account, host, int(port)):
        stopped.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
