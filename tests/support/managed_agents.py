"""A stand-in for Claude Managed Agents' send-events endpoint on 127.0.0.1, speaking its JSON, and uvicorn serving
an ASGI app with its lifespan (the CMA adapter builds its HTTP client there).

What the stand-in checks, as the API reference describes `POST /v1/sessions/{session_id}/events`: the headers
`x-api-key`, `anthropic-version: 2023-06-01` and `anthropic-beta` naming `managed-agents-2026-04-01`; a JSON body
that is exactly `{"events": [...]}`, each event a `user.message` or `system.message` whose `content` is a non-empty
list of `{"type": "text", "text": ...}` blocks. A request failing a check gets the API's error shape
(`{"type": "error", "error": {"type", "message"}, "request_id"}`) and is listed in `refused`; an accepted one is
answered 200 `{"data": [<each event with id and processed_at>]}` and its events are kept per session.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from starlette.types import ASGIApp

ANTHROPIC_VERSION = "2023-06-01"
MANAGED_AGENTS_BETA = "managed-agents-2026-04-01"
EVENTS_PATH = re.compile(r"^/v1/sessions/(?P<session_id>[A-Za-z0-9_-]+)/events$")
SENDABLE = {"user.message", "system.message"}


@dataclass(frozen=True)
class ApiReply:
    """A scripted answer instead of the stand-in's own: the API's error shape with this status and type."""

    status: int
    error_type: str = "api_error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Refusal(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


def _check_headers(headers: dict[str, str], api_key: str) -> None:
    if headers.get("x-api-key") != api_key:
        raise _Refusal(401, "authentication_error", "invalid x-api-key")
    if headers.get("anthropic-version") != ANTHROPIC_VERSION:
        raise _Refusal(400, "invalid_request_error", "anthropic-version must be 2023-06-01")
    betas = [beta.strip() for beta in headers.get("anthropic-beta", "").split(",")]
    if MANAGED_AGENTS_BETA not in betas:
        raise _Refusal(400, "invalid_request_error", "this endpoint needs anthropic-beta: managed-agents-2026-04-01")
    if not headers.get("content-type", "").startswith("application/json"):
        raise _Refusal(400, "invalid_request_error", "content-type must be application/json")


def _check_events(body: bytes) -> list[dict[str, Any]]:
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise _Refusal(400, "invalid_request_error", "the body is not JSON") from exc
    if not isinstance(parsed, dict) or set(parsed) != {"events"}:
        raise _Refusal(400, "invalid_request_error", "the body must be exactly {events}")
    events = parsed["events"]
    if not isinstance(events, list) or not events:
        raise _Refusal(400, "invalid_request_error", "events must be a non-empty list")
    for event in events:
        if not isinstance(event, dict) or set(event) != {"type", "content"} or event["type"] not in SENDABLE:
            raise _Refusal(400, "invalid_request_error", "each event must be {type, content} of a sendable type")
        content = event["content"]
        if not isinstance(content, list) or not content:
            raise _Refusal(400, "invalid_request_error", "content must be a non-empty list of blocks")
        for block in content:
            if not isinstance(block, dict) or set(block) != {"type", "text"} or block["type"] != "text":
                raise _Refusal(400, "invalid_request_error", "each block must be {type: text, text}")
            if not isinstance(block["text"], str) or not block["text"]:
                raise _Refusal(400, "invalid_request_error", "a text block's text must be a non-empty string")
    return events


class SessionsStandIn:
    """Answers `POST /v1/sessions/{id}/events` for the sessions it knows, as the Managed Agents API does."""

    def __init__(self, api_key: str, sessions: set[str]) -> None:
        self.api_key = api_key
        self.sessions = sessions
        self.requests: list[SessionRequest] = []
        self.refused: list[tuple[int, str]] = []
        self.accepted: dict[str, list[dict[str, Any]]] = {session: [] for session in sessions}
        self.script: list[ApiReply] = []
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("content-length", "0"))
                request = SessionRequest(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                status, headers, body = stand_in._answer(request)
                payload = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - overrides the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _error(self, error_type: str, message: str) -> dict[str, Any]:
        return {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": f"req_standin{next(self._ids):06d}",
        }

    def _answer(self, request: SessionRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            try:
                match = EVENTS_PATH.match(request.path)
                if match is None:
                    raise _Refusal(404, "not_found_error", "no such route")
                _check_headers(request.headers, self.api_key)
                events = _check_events(request.body)
                session_id = match["session_id"]
                if session_id not in self.sessions:
                    raise _Refusal(404, "not_found_error", "session not found")
            except _Refusal as refusal:
                self.refused.append((refusal.status, str(refusal)))
                return refusal.status, {}, self._error(refusal.error_type, str(refusal))
            if self.script:
                reply = self.script.pop(0)
                return reply.status, reply.headers, self._error(reply.error_type, "scripted")
            data = [{"id": f"sevt_standin{next(self._ids):06d}", **event, "processed_at": None} for event in events]
            self.accepted[session_id].extend(events)
            return 200, {}, {"data": data}

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[SessionRequest]:
        """Block until at least `count` requests arrived (bounded); returns them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} session requests, got {len(self.requests)} in {timeout}s")
                self._lock.wait(remaining)
            return list(self.requests)


@contextmanager
def running_sessions_stand_in(api_key: str, sessions: set[str]) -> Iterator[SessionsStandIn]:
    stand_in = SessionsStandIn(api_key, sessions)
    thread = threading.Thread(target=stand_in.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()
        thread.join(timeout=5)


@contextmanager
def serving_with_lifespan(app: ASGIApp, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a thread, its lifespan run; yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "uvicorn did not stop"
