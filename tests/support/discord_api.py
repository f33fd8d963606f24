"""A stand-in Discord on 127.0.0.1: the REST API a bot uses and the gateway WebSocket, on their real wire formats.

REST (under `{root}` = `http://127.0.0.1:PORT/api/v10`, `Authorization: Bot <token>`):
`GET /gateway/bot`, `GET /users/@me`, `POST /channels/{id}/messages` (recorded; answers a message
object, or a scripted error: 429 with Discord's rate-limit body and headers, 403, 404),
`GET /channels/{id}/messages?after=&limit=` (the channel's history, newest first, as Discord pages it).

Gateway (`ws://127.0.0.1:PORT/gateway?v=10&encoding=json[&compress=zlib-stream]`): HELLO (op 10) with a
heartbeat_interval, IDENTIFY (op 2) → READY with session_id and resume_gateway_url, HEARTBEAT (op 1) →
HEARTBEAT_ACK (op 11), RESUME (op 6) → the missed dispatches then RESUMED, or INVALID_SESSION (op 9,
`d: false`) for a session it no longer knows. Dispatches carry a sequence number per session; those sent
while no socket was open are kept for a RESUME, as Discord does. With `compress=zlib-stream` every frame
is one zlib stream's output up to a Z_SYNC_FLUSH, in binary frames.

The server runs on its own event loop in a thread; the test thread drives it with the methods below.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

DISCORD_EPOCH_MS = 1_420_070_400_000
BOT_TOKEN = "MTMwMDAwMDAwMDAwMDAwMDAwMQ.GxYzAb.standin-bot-token-0123456789abcdefghij"
BOT_USER: dict[str, Any] = {
    "id": "1300000000000000001",
    "username": "chatbox-agent",
    "global_name": None,
    "discriminator": "4821",
    "avatar": None,
    "bot": True,
    "verified": True,
    "flags": 0,
    "mfa_enabled": False,
    "public_flags": 0,
}
APPLICATION: dict[str, Any] = {
    "id": BOT_USER["id"],
    "name": "chatbox-agent",
    "icon": None,
    "description": "",
    "summary": "",
    "type": None,
    "bot_public": False,
    "bot_require_code_grant": False,
    "verify_key": "3c6f2b0d4e8a1f7c9b5d2e6a0f4c8b1d7e3a9c5f2b6d0e4a8c1f7b3d9e5a2c6f",
    "flags": 565248,
    "owner": {"id": "1200000000000000001", "username": "owner", "discriminator": "0", "avatar": None},
    "team": None,
    "redirect_uris": [],
    "interactions_endpoint_url": None,
}
GUILD_ID = "1100000000000000010"
USER_ADA: dict[str, Any] = {
    "id": "1200000000000000042",
    "username": "ada.l",
    "global_name": "Ada",
    "discriminator": "0",
    "avatar": None,
    "public_flags": 0,
}

# Close codes Discord uses that a client must not resume after (authentication failed, bad intents, ...).
AUTHENTICATION_FAILED = 4004

Json = dict[str, Any]


@dataclass
class RestCall:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    files: list[tuple[str, bytes, str]] = field(default_factory=list)  # uploads: (filename, bytes, content type)


@dataclass
class Scripted:
    """The answer to the next `POST /channels/{id}/messages`: a status, a JSON body and headers."""

    status: int
    body: Json
    headers: dict[str, str] = field(default_factory=dict)


def rate_limited(retry_after: float = 1.5, *, global_limit: bool = False) -> Scripted:
    """Discord's 429 on a route bucket: body and headers as the API sends them."""
    return Scripted(
        429,
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_limit},
        {
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Bucket": "80c17d2f203122d936070c88c8d10f33",
            "X-RateLimit-Scope": "global" if global_limit else "user",
        },
    )


def missing_permissions() -> Scripted:
    return Scripted(403, {"message": "Missing Permissions", "code": 50013})


@dataclass
class Session:
    session_id: str
    sequence: int = 0
    frames: list[Json] = field(default_factory=list)
    valid: bool = True


@dataclass
class Socket:
    ws: web.WebSocketResponse
    compressor: Any | None
    query: dict[str, str]
    session: Session | None = None


class DiscordStandIn:
    """The stand-in's state, touched only on its own loop (the public methods hop onto it)."""

    def __init__(self, token: str = BOT_TOKEN, heartbeat_interval_ms: int = 41_250) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.calls: list[RestCall] = []
        self.sent: list[RestCall] = []
        self.actions: list[RestCall] = []  # edits, deletions, reactions and typing, in order
        self.script: list[Scripted | None] = []  # answers to the next creates; None: the create goes through
        self.known_channels: set[str] | None = None  # None: every channel exists
        self.history: dict[str, list[Json]] = {}
        self.cdn_files: dict[str, tuple[bytes, str]] = {}  # CDN path -> (bytes, content type)
        self.identifies: list[Json] = []
        self.resumes: list[Json] = []
        self.connections: list[dict[str, str]] = []
        self.heartbeats = 0
        self.gateway_down = False  # refuse WebSocket upgrades, as during a gateway outage
        self.send_delay = 0.0  # seconds a successful POST /channels/{id}/messages takes (a slow Discord)
        # One flag per next create: True makes the message, then closes the connection without an answer.
        self.drop_responses: list[bool] = []
        self.by_nonce: dict[tuple[str, str], Json] = {}  # (channel, nonce) -> the message it made
        self.session: Session | None = None
        self._socket: Socket | None = None
        self._counter = 0
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.port = 0

    # --- urls ---

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # --- driving it from the test thread ---

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def new_snowflake(self) -> str:
        with self._lock:
            self._counter += 1
            return str(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) | (self._counter & 0x3FFFFF))

    def message(
        self,
        channel_id: str,
        content: str,
        *,
        author: Json | None = None,
        guild_id: str | None = GUILD_ID,
        reply_to: str | None = None,
    ) -> Json:
        """A message object as the API shows it, with a fresh snowflake, kept in the channel's history."""
        message_id = self.new_snowflake()
        data: Json = {
            "type": 19 if reply_to else 0,
            "tts": False,
            "timestamp": _iso_of(message_id),
            "pinned": False,
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "id": message_id,
            "flags": 0,
            "embeds": [],
            "edited_timestamp": None,
            "content": content,
            "components": [],
            "channel_id": channel_id,
            "author": author or USER_ADA,
            "attachments": [],
        }
        if guild_id is not None:
            data["guild_id"] = guild_id
            data["member"] = {"roles": [], "nick": None, "joined_at": "2025-03-01T10:00:00+00:00", "flags": 0}
        if reply_to:
            data["message_reference"] = {"type": 0, "channel_id": channel_id, "message_id": reply_to}
        with self._lock:
            self.history.setdefault(channel_id, []).append(data)
        return data

    def post_message(self, channel_id: str, content: str, **fields: Any) -> Json:
        """Someone writes in a channel: kept in its history and dispatched as MESSAGE_CREATE."""
        data = self.message(channel_id, content, **fields)
        self.dispatch("MESSAGE_CREATE", data)
        return data

    def dispatch(self, event: str, data: Json) -> None:
        """A dispatch on the current session: sent now when a socket is open, else kept for a RESUME."""
        self._run(self._dispatch(event, data))

    def drop_socket(self, *, resumable: bool = True) -> None:
        """Close the open gateway socket as a network fault would look to the client (close code 4000,
        which a client resumes after); with `resumable=False` the session is forgotten too, so the
        RESUME that follows gets INVALID_SESSION and the client must IDENTIFY afresh."""
        self._run(self._drop(resumable))

    def wait_until(self, check: Any, timeout: float = 15.0, what: str = "the stand-in") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def connected(self) -> bool:
        socket = self._socket
        return socket is not None and socket.session is not None and not socket.ws.closed

    def sent_to(self, channel_id: str) -> list[Json]:
        return [call.body for call in list(self.sent) if call.path == f"/channels/{channel_id}/messages"]

    # --- the server ---

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get("/api/v10/gateway", self._gateway)
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_post("/api/v10/channels/{channel_id}/messages", self._create_message)
        app.router.add_get("/api/v10/channels/{channel_id}/messages", self._list_messages)
        app.router.add_get("/gateway", self._websocket)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_patch("/api/v10/channels/{channel_id}/messages/{message_id}", self._message_action)
        app.router.add_delete("/api/v10/channels/{channel_id}/messages/{message_id}", self._message_action)
        reaction = "/api/v10/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
        app.router.add_put(reaction, self._message_action)
        app.router.add_delete(reaction, self._message_action)
        app.router.add_post("/api/v10/channels/{channel_id}/typing", self._message_action)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        return app

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _record(self, request: web.Request, body: Any = None) -> RestCall:
        call = RestCall(request.method, request.path.removeprefix("/api/v10"), dict(request.headers), body)
        self.calls.append(call)
        return call

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorized(request):
            return _unauthorized()
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 14_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _gateway(self, request: web.Request) -> web.Response:
        self._record(request)
        return _json({"url": self.gateway_url})

    async def _me(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorized(request):
            return _unauthorized()
        return _json(BOT_USER)

    async def _application(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorized(request):
            return _unauthorized()
        return _json(APPLICATION)

    async def _multipart_message(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes, str]]]:
        """Discord's upload format: a `payload_json` part and `files[n]` parts (read as Discord reads them)."""
        body: Any = None
        files: list[tuple[str, bytes, str]] = []
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "payload_json":
                body = json.loads(await part.read())
            elif part.name is not None and part.name.startswith("files["):
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                files.append((part.filename or "", bytes(await part.read()), content_type))
        return body, files

    def cdn_url(self, channel_id: str, attachment_id: str, filename: str) -> str:
        return f"http://127.0.0.1:{self.port}/attachments/{channel_id}/{attachment_id}/{filename}"

    def add_cdn_file(self, channel_id: str, filename: str, data: bytes, content_type: str) -> str:
        """A file on the CDN (as one a user attached), by its URL."""
        url = self.cdn_url(channel_id, self.new_snowflake(), filename)
        self.cdn_files[url.split(str(self.port), 1)[1]] = (data, content_type)
        return url

    async def _cdn(self, request: web.Request) -> web.Response:
        """cdn.discordapp.com: an attachment's bytes, to anyone with the (signed) URL."""
        self._record(request)
        found = self.cdn_files.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def _create_message(self, request: web.Request) -> web.Response:
        files: list[tuple[str, bytes, str]] = []
        if request.content_type.startswith("multipart/"):
            body, files = await self._multipart_message(request)
        else:
            try:
                body = await request.json()
            except ValueError:
                body = None
        call = self._record(request, body)
        call.files.extend(files)
        if not self._authorized(request):
            return _unauthorized()
        channel_id = request.match_info["channel_id"]
        if self.known_channels is not None and channel_id not in self.known_channels:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            return _json(scripted.body, status=scripted.status, headers=scripted.headers)
        content = body.get("content") if isinstance(body, dict) else None
        if files and content is None:
            content = ""
        if sum(len(data) for _, data, _ in files) > 10 * 1024 * 1024:
            return _json({"message": "Request entity too large", "code": 40005}, status=413)
        if not isinstance(content, str) or (not content and not files):
            return _json({"message": "Cannot send an empty message", "code": 50006}, status=400)
        if len(content) > 2000:
            error = {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}
            return _json({"message": "Invalid Form Body", "code": 50035, "errors": {"content": error}}, status=400)
        nonce = body.get("nonce") if isinstance(body, dict) else None
        key = (channel_id, str(nonce))
        if nonce is not None and body.get("enforce_nonce") is True and key in self.by_nonce:
            # Discord: "if another message was created by the same author with the same nonce, that message will
            # be returned and no new message will be created".
            return _json(self.by_nonce[key])
        self.sent.append(call)
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        reference = body.get("message_reference") if isinstance(body, dict) else None
        reply_to = reference.get("message_id") if isinstance(reference, dict) else None
        message = self.message(channel_id, content, author=BOT_USER, reply_to=reply_to)
        message["flags"] = body.get("flags", 0) if isinstance(body, dict) else 0
        for filename, data, content_type in files:
            attachment_id = self.new_snowflake()
            url = self.cdn_url(channel_id, attachment_id, filename)
            self.cdn_files[url.split(str(self.port), 1)[1]] = (data, content_type)
            message["attachments"].append(
                {
                    "id": attachment_id,
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": content_type,
                }
            )
        if nonce is not None:
            message["nonce"] = nonce
            self.by_nonce[key] = message
        if self.drop_responses and self.drop_responses.pop(0):
            assert request.transport is not None
            request.transport.close()  # made, and the answer is lost on the way
        return _json(message)

    async def _message_action(self, request: web.Request) -> web.Response:
        """PATCH / DELETE a message, PUT / DELETE the bot's reaction, POST typing: recorded in `actions`; a PATCH
        answers the edited message, the others 204 as Discord does."""
        body = None
        if request.method == "PATCH":
            try:
                body = await request.json()
            except ValueError:
                body = None
        call = self._record(request, body)
        if not self._authorized(request):
            return _unauthorized()
        self.actions.append(call)
        if request.method == "PATCH":
            content = body.get("content") if isinstance(body, dict) else None
            if not isinstance(content, str) or len(content) > 2000:
                return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
            channel_id, message_id = request.match_info["channel_id"], request.match_info["message_id"]
            return _json({"id": message_id, "channel_id": channel_id, "content": content, "author": BOT_USER})
        return web.Response(status=204)

    async def _list_messages(self, request: web.Request) -> web.Response:
        self._record(request)
        if not self._authorized(request):
            return _unauthorized()
        channel_id = request.match_info["channel_id"]
        after = int(request.query.get("after", "0"))
        limit = min(100, max(1, int(request.query.get("limit", "50"))))
        with self._lock:
            newer = [m for m in self.history.get(channel_id, []) if int(m["id"]) > after]
        # With `after`, Discord answers the `limit` messages right after it, newest first.
        page = sorted(newer, key=lambda m: int(m["id"]))[:limit]
        return _json(list(reversed(page)))

    async def _not_found(self, request: web.Request) -> web.Response:
        self._record(request)
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_down:
            return web.Response(status=503, text="upstream connect error")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        query = dict(request.query)
        self.connections.append(query)
        compressor = zlib.compressobj() if query.get("compress") == "zlib-stream" else None
        socket = Socket(ws, compressor, query)
        self._socket = socket
        await self._send(
            socket, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        async for frame in ws:
            if frame.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            await self._on_frame(socket, payload)
        if self._socket is socket:
            self._socket = None
        return ws

    async def _on_frame(self, socket: Socket, payload: Json) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats += 1
            await self._send(socket, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(socket, data or {})
        elif op == 6:
            await self._resume(socket, data or {})

    async def _identify(self, socket: Socket, data: Json) -> None:
        if data.get("token") != self.token:
            await socket.ws.close(code=AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        self.identifies.append(data)
        session = Session(session_id=secrets.token_hex(16))
        self.session = session
        socket.session = session
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "user_settings": {},
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["frankfurt", "rotterdam"],
            "application": {"id": BOT_USER["id"], "flags": 565248},
            "_trace": ['["gateway-prd-standin",{"micros":1200}]'],
        }
        await self._dispatch_on(session, "READY", ready)

    async def _resume(self, socket: Socket, data: Json) -> None:
        self.resumes.append(data)
        session = self.session
        if (
            data.get("token") != self.token
            or session is None
            or not session.valid
            or data.get("session_id") != session.session_id
        ):
            await self._send(socket, {"op": 9, "d": False, "s": None, "t": None})
            return
        socket.session = session
        seq = data.get("seq") or 0
        for frame in [f for f in session.frames if f["s"] > seq]:
            await self._send(socket, frame)
        await self._dispatch_on(session, "RESUMED", {"_trace": ['["gateway-prd-standin",{"micros":800}]']})

    async def _dispatch(self, event: str, data: Json) -> None:
        if self.session is None:
            raise AssertionError("no gateway session yet: wait for the client's IDENTIFY")
        await self._dispatch_on(self.session, event, data)

    async def _dispatch_on(self, session: Session, event: str, data: Json) -> None:
        session.sequence += 1
        frame = {"op": 0, "t": event, "s": session.sequence, "d": data}
        session.frames.append(frame)
        socket = self._socket
        if socket is not None and socket.session is session and not socket.ws.closed:
            await self._send(socket, frame)

    async def _drop(self, resumable: bool) -> None:
        socket = self._socket
        self._socket = None
        if not resumable and self.session is not None:
            self.session.valid = False
        if socket is not None:
            await socket.ws.close(code=4000, message=b"Unknown error.")

    async def _send(self, socket: Socket, payload: Json) -> None:
        """Send a frame; a socket the client just dropped (killed, closing) takes nothing, as on Discord: a
        dispatch stays in its session for a RESUME."""
        raw = json.dumps(payload, separators=(",", ":"))
        try:
            if socket.compressor is None:
                await socket.ws.send_str(raw)
            else:
                data = socket.compressor.compress(raw.encode()) + socket.compressor.flush(zlib.Z_SYNC_FLUSH)
                await socket.ws.send_bytes(data)
        except ConnectionError:  # aiohttp's ClientConnectionResetError is one
            if self._socket is socket:
                self._socket = None


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with Discord's exact content type (discord.py parses a body only when it is exactly that)."""
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers={**(headers or {}), "Content-Type": "application/json"})


def _unauthorized() -> web.Response:
    return _json({"message": "401: Unauthorized", "code": 0}, status=401)


def _iso_of(snowflake: str) -> str:
    millis = (int(snowflake) >> 22) + DISCORD_EPOCH_MS
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis / 1000)) + f".{millis % 1000:03d}000+00:00"


@contextmanager
def running_discord(token: str = BOT_TOKEN, heartbeat_interval_ms: int = 41_250) -> Iterator[DiscordStandIn]:
    """The stand-in serving on a free 127.0.0.1 port in a thread of its own; stopped after the block."""
    standin = DiscordStandIn(token, heartbeat_interval_ms)
    runner = web.AppRunner(standin.app(), handle_signals=False, access_log=None)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(standin.loop)
        standin.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        standin.loop.run_until_complete(site.start())
        standin.port = runner.addresses[0][1]
        started.set()
        standin.loop.run_forever()
        standin.loop.run_until_complete(runner.cleanup())
        standin.loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not started.wait(10):
        raise AssertionError("the Discord stand-in did not start")
    try:
        yield standin
    finally:
        standin.loop.call_soon_threadsafe(standin.loop.stop)
        thread.join(timeout=10)
        assert not thread.is_alive(), "the Discord stand-in did not stop"
