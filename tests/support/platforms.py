"""Real HTTP servers on 127.0.0.1 standing in for the Telegram Bot API and the Slack Web API (with Slack's
Socket Mode WebSocket side in `tests.support.slack_socket`).

They answer with the platforms' real JSON shapes (including their errors), record every call, and
take scripted answers for rate limits. Slack webhooks are signed exactly as Slack signs them.
"""

from __future__ import annotations

import email.policy
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.support.slack_socket import SocketModeServer, running_socket_mode

Json = dict[str, Any]


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: Json
    headers: dict[str, str]
    # Files of a multipart/form-data request, by field: (filename, bytes, content type).
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)


@dataclass
class Answer:
    """`body` is sent as JSON; a `str` body is sent as is, as text/html (a proxy's error page, say)."""

    status: int
    body: Json | str | bytes  # bytes: a file, sent as `content_type`
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"


class _StandIn:
    """The HTTP plumbing: parses JSON, form and query parameters; subclasses answer `(method, params, headers)`."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.script: dict[str, list[Answer]] = {}
        # method -> one flag per next call of it: True handles the call (recorded, acted on) and then closes the
        # connection without an answer, as a lost response; False answers it normally.
        self.drop_responses: dict[str, list[bool]] = {}
        self._lock = threading.Lock()
        self._request = threading.local()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length) if length else b""
                params: Json = dict(parse_qsl(url.query))
                content_type = self.headers.get("content-type", "")
                files: dict[str, tuple[str, bytes, str]] = {}
                if raw and content_type.startswith("multipart/form-data"):
                    fields, files = parse_multipart(content_type, raw)
                    params.update(fields)
                elif raw and "json" in content_type:
                    params.update(json.loads(raw))
                elif raw and url.path.startswith("/upload/v1/"):
                    files["body"] = ("", raw, content_type)  # Slack's upload URL takes the raw bytes
                elif raw and content_type.startswith("application/x-www-form-urlencoded"):
                    params.update(dict(parse_qsl(raw.decode())))
                elif raw:
                    files["body"] = ("", raw, content_type)  # an upload of raw bytes (Slack's upload URL)
                headers = {k.lower(): v for k, v in self.headers.items()}
                stand_in._request.files = files
                answer = stand_in._dispatch(url.path, params, headers)
                if stand_in._take_drop(url.path):
                    # The platform acted, then the answer was lost: the connection closes with no response.
                    self.close_connection = True
                    return
                if isinstance(answer.body, bytes):
                    payload, answer_type = answer.body, answer.content_type
                elif isinstance(answer.body, str):
                    payload, answer_type = answer.body.encode(), "text/html"
                else:
                    payload, answer_type = json.dumps(answer.body).encode(), "application/json"
                self.send_response(answer.status)
                self.send_header("content-type", answer_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle  # noqa: N815 - http.server's naming
            do_POST = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - overrides the base signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _dispatch(self, path: str, params: Json, headers: dict[str, str]) -> Answer:
        raise NotImplementedError

    @property
    def request_files(self) -> dict[str, tuple[str, bytes, str]]:
        """The files of the request being dispatched on this thread (one handler thread per request)."""
        files: dict[str, tuple[str, bytes, str]] = getattr(self._request, "files", {})
        return files

    def _take_drop(self, path: str) -> bool:
        method = path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            plan = self.drop_responses.get(method)
            return plan.pop(0) if plan else False

    def _scripted(self, method: str) -> Answer | None:
        queue = self.script.get(method)
        return queue.pop(0) if queue else None

    def calls_of(self, method: str) -> list[ApiCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]


class TelegramBotApi(_StandIn):
    """`{root}/bot{token}/{method}` for getMe, setWebhook, getWebhookInfo, deleteWebhook, getUpdates, sendMessage.

    `blocked_chats` answer 403 "bot was blocked by the user"; `unknown_chats` 400 "chat not found";
    `script[method]` answers (e.g. a 429 with `parameters.retry_after`) come first.

    getUpdates is Telegram's long poll: `push_update` queues an update for a bot; a call answers the
    queued updates with `update_id >= offset` at once, or waits up to its `timeout` for one; an `offset`
    confirms (forgets) every update below it. A call while a webhook is set answers 409, and a newer call
    for the same bot ends a waiting one with 409, as Telegram does.
    """

    def __init__(self, tokens: dict[str, Json]) -> None:
        super().__init__()
        self.tokens = tokens
        self.blocked_chats: set[str] = set()
        self.unknown_chats: set[str] = set()
        self.webhooks: dict[str, Json] = {}
        self.stored_files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.pending: dict[str, list[Json]] = {}
        self._message_ids = itertools.count(500)
        self._changed = threading.Condition(self._lock)
        self._polls: dict[str, int] = {}

    def push_update(self, token: str, update: Json) -> None:
        with self._lock:
            self.pending.setdefault(token, []).append(update)
            self._changed.notify_all()

    def getupdates_offsets(self) -> list[int | None]:
        """The `offset` of every getUpdates call so far, in order (None when the call had none)."""
        return [call.params.get("offset") for call in self.calls_of("getUpdates")]

    def add_file(self, file_id: str, data: bytes, file_path: str) -> None:
        """A file the bots can getFile and download (as a photo or document sent to them would be)."""
        self.stored_files[file_id] = (file_path, data)

    def _download(self, path: str, headers: dict[str, str]) -> Answer:
        """`GET /file/bot<token>/<file_path>`: Telegram serves the bytes as application/octet-stream."""
        token, _, file_path = path.removeprefix("/file/bot").partition("/")
        with self._lock:
            self.calls.append(ApiCall("file", {"file_path": file_path}, headers))
            found = [data for stored_path, data in self.stored_files.values() if stored_path == file_path]
        if token not in self.tokens or not found:
            return _telegram_error(404, "Not Found")
        return Answer(200, found[0])

    def _dispatch(self, path: str, params: Json, headers: dict[str, str]) -> Answer:
        if path.startswith("/file/bot"):
            return self._download(path, headers)
        _, _, rest = path.partition("/bot")
        token, _, method = rest.partition("/")
        with self._lock:
            self.calls.append(ApiCall(method, params, headers, self.request_files))
            bot = self.tokens.get(token)
            if bot is None:
                return Answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            scripted = self._scripted(method)
            if scripted is not None:
                return scripted
            if method == "getMe":
                return _ok(bot)
            if method == "setWebhook":
                if not str(params.get("url", "")).startswith("https://"):
                    return _telegram_error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
                self.webhooks[token] = params
                return Answer(200, {"ok": True, "result": True, "description": "Webhook was set"})
            if method == "getWebhookInfo":
                url = self.webhooks.get(token, {}).get("url", "")
                pending = len(self.pending.get(token, []))
                return _ok({"url": url, "has_custom_certificate": False, "pending_update_count": pending})
            if method == "deleteWebhook":
                self.webhooks.pop(token, None)
                if params.get("drop_pending_updates") is True:
                    self.pending.pop(token, None)
                return Answer(200, {"ok": True, "result": True, "description": "Webhook was deleted"})
            if method == "getUpdates":
                return self._get_updates(token, params)
            if method == "sendMessage":
                return self._send_message(bot, params)
            if method == "getFile":
                return self._get_file(params)
            if method in ("sendPhoto", "sendDocument"):
                return self._send_media(bot, method, params)
            if method in _TELEGRAM_ACTIONS:
                return self._message_action(method, params)
            return _telegram_error(404, "Not Found")

    def _get_updates(self, token: str, params: Json) -> Answer:
        """Called with the lock held; waits on the condition (which releases it) for the long poll."""
        if token in self.webhooks:
            return _telegram_error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete "
                "the webhook first",
            )
        offset = int(params["offset"]) if "offset" in params else None
        if offset is not None:
            self.pending[token] = [u for u in self.pending.get(token, []) if u["update_id"] >= offset]
        poll = self._polls.get(token, 0) + 1
        self._polls[token] = poll
        self._changed.notify_all()
        deadline = time.monotonic() + min(float(params.get("timeout", 0)), 50.0)
        while True:
            if self._polls[token] != poll:
                return _telegram_error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                )
            ready = [u for u in self.pending.get(token, []) if offset is None or u["update_id"] >= offset]
            left = deadline - time.monotonic()
            if ready or left <= 0:
                return _ok(ready[: int(params.get("limit", 100))])
            self._changed.wait(left)

    def _send_message(self, bot: Json, params: Json) -> Answer:
        chat_id = str(params["chat_id"])
        if chat_id in self.blocked_chats:
            return _telegram_error(403, "Forbidden: bot was blocked by the user")
        if chat_id in self.unknown_chats:
            return _telegram_error(400, "Bad Request: chat not found")
        text = str(params.get("text", ""))
        if not text or len(text.encode("utf-16-le")) // 2 > 4096:
            return _telegram_error(
                400, "Bad Request: message is too long" if text else "Bad Request: message text is empty"
            )
        chat: Json = {"id": int(chat_id), "type": "private", "first_name": "Ada"}
        if int(chat_id) < 0:
            chat = {"id": int(chat_id), "type": "supergroup", "title": "Team"}
        message: Json = {
            "message_id": next(self._message_ids),
            "from": {"id": bot["id"], "is_bot": True, "first_name": bot["first_name"], "username": bot["username"]},
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if "reply_parameters" in params:
            reply = params["reply_parameters"]
            if isinstance(reply, str):  # a form-encoded request JSON-serializes it; a JSON body carries the object
                reply = json.loads(reply)
            message["reply_to_message"] = {"message_id": reply["message_id"], "chat": chat, "date": 0, "text": "…"}
        return _ok(message)

    def _get_file(self, params: Json) -> Answer:
        stored = self.stored_files.get(str(params.get("file_id", "")))
        if stored is None:
            return _telegram_error(400, "Bad Request: invalid file_id")
        path, data = stored
        if len(data) > 20 * 1024 * 1024:
            return _telegram_error(400, "Bad Request: file is too big")
        file_id = str(params["file_id"])
        return _ok(
            {"file_id": file_id, "file_unique_id": f"U{file_id[-8:]}", "file_size": len(data), "file_path": path}
        )

    def _send_media(self, bot: Json, method: str, params: Json) -> Answer:
        """sendPhoto / sendDocument with the file uploaded as multipart/form-data (a file_id or URL string is
        also Telegram's, but chatbox always uploads)."""
        field_name = "photo" if method == "sendPhoto" else "document"
        upload = self.request_files.get(field_name)
        if upload is None:
            return _telegram_error(400, f"Bad Request: there is no {field_name} in the request")
        filename, data, content_type = upload
        limit = 10 * 1024 * 1024 if method == "sendPhoto" else 50 * 1024 * 1024
        if len(data) > limit:
            return _telegram_error(413, "Request Entity Too Large")
        answer = self._send_message(bot, {**params, "text": params.get("caption") or "(file)"})
        if answer.status != 200 or not isinstance(answer.body, dict):
            return answer
        message = dict(answer.body["result"])
        message.pop("text", None)
        if params.get("caption"):
            message["caption"] = params["caption"]
        file_id = f"BQACAgIAAx{message['message_id']}"
        self.stored_files[file_id] = (f"{field_name}s/file_{message['message_id']}", data)
        if method == "sendPhoto":
            message["photo"] = [
                {"file_id": file_id + "_s", "file_unique_id": "s", "file_size": 100, "width": 90, "height": 90},
                {"file_id": file_id, "file_unique_id": "l", "file_size": len(data), "width": 800, "height": 600},
            ]
        else:
            message["document"] = {
                "file_name": filename,
                "mime_type": content_type,
                "file_id": file_id,
                "file_unique_id": "d",
                "file_size": len(data),
            }
        return _ok(message)

    def sent_texts(self) -> list[str]:
        return [str(call.params["text"]) for call in self.calls_of("sendMessage")]

    def _message_action(self, method: str, params: Json) -> Answer:
        """editMessageText, deleteMessage, setMessageReaction, sendChatAction, with Telegram's checks of shape."""
        chat_id = str(params.get("chat_id", ""))
        if chat_id in self.unknown_chats:
            return _telegram_error(400, "Bad Request: chat not found")
        if method == "sendChatAction":
            if params.get("action") not in ("typing", "upload_photo", "record_voice", "upload_document"):
                return _telegram_error(400, "Bad Request: wrong parameter action in request")
            return _ok(True)
        if not isinstance(params.get("message_id"), int):
            return _telegram_error(400, "Bad Request: message identifier is not specified")
        if method == "setMessageReaction":
            reaction = params.get("reaction")
            if not isinstance(reaction, list) or any(
                not isinstance(r, dict) or r.get("type") != "emoji" or not r.get("emoji") for r in reaction
            ):
                return _telegram_error(400, "Bad Request: REACTION_INVALID")
            return _ok(True)
        if method == "editMessageText":
            if not str(params.get("text", "")):
                return _telegram_error(400, "Bad Request: message text is empty")
            chat: Json = {"id": int(chat_id), "type": "private", "first_name": "Ada"}
            return _ok({"message_id": params["message_id"], "chat": chat, "date": 0, "text": params["text"]})
        return _ok(True)


_TELEGRAM_ACTIONS = frozenset({"editMessageText", "deleteMessage", "setMessageReaction", "sendChatAction"})


def parse_multipart(content_type: str, raw: bytes) -> tuple[Json, dict[str, tuple[str, bytes, str]]]:
    """A multipart/form-data body as (text fields, files by field name), parsed by the standard library's MIME
    parser as a platform's server would read it."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: Json = {}
    files: dict[str, tuple[str, bytes, str]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            raise ValueError("a multipart part without a name")
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload, part.get_content_type())
        else:
            fields[name] = payload.decode()
    return fields, files


def _ok(result: Any) -> Answer:
    return Answer(200, {"ok": True, "result": result})


def _telegram_error(code: int, description: str, **parameters: Any) -> Answer:
    body: Json = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Answer(code, body)


def telegram_rate_limit(retry_after: int) -> Answer:
    """Telegram's 429, as sent: the wait in `parameters.retry_after`."""
    return _telegram_error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


def telegram_chat_migrated(new_chat_id: int) -> Answer:
    """Telegram's 400 for a group that became a supergroup: the new id in `parameters.migrate_to_chat_id`."""
    return _telegram_error(
        400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=new_chat_id
    )


TELEGRAM_BOT: Json = {
    "id": 7012345678,
    "is_bot": True,
    "first_name": "Chatbox Test",
    "username": "chatbox_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class SlackWebApi(_StandIn):
    """`{root}/{method}` for auth.test, chat.postMessage, users.info, conversations.info, and
    conversations.history / conversations.replies over the messages posted (`posted`, by channel).

    Slack answers API errors with HTTP 200 and `{"ok": false, "error": ...}`; rate limits with 429 and
    `Retry-After` (scripted). `channels` are the conversations the bot is in.
    """

    def __init__(self, token: str, *, app_token: str | None = None, socket: SocketModeServer | None = None) -> None:
        super().__init__()
        self.token = token
        self.app_token = app_token
        self.socket = socket
        self.channels: dict[str, Json] = {
            "C0GENERAL": {"id": "C0GENERAL", "name": "general", "is_channel": True, "is_private": False},
            "D0ADA": {"id": "D0ADA", "is_im": True, "user": "U0ADA"},
        }
        self.users: dict[str, Json] = {
            "U0ADA": {"id": "U0ADA", "name": "ada", "real_name": "Ada Lovelace", "profile": {"display_name": "ada"}}
        }
        self._ts = itertools.count(1)
        self.files: dict[str, Json] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.pending_uploads: dict[str, Json] = {}
        self.posted: dict[str, list[Json]] = {}  # chat.postMessage's messages per channel (conversations.history)

    def add_file(self, file_id: str, data: bytes, name: str, mimetype: str) -> None:
        """A file in the workspace (as one shared in a channel), for files.info and its url_private_download."""
        self.files[file_id] = {"id": file_id, "name": name, "mimetype": mimetype, "size": len(data), "shares": {}}
        self.file_bytes[file_id] = data

    def _file_object(self, file_id: str) -> Json:
        file = dict(self.files[file_id])
        file["url_private"] = f"{self.root}/files-pri/T0ACME-{file_id}/{file['name']}"
        file["url_private_download"] = f"{self.root}/files-pri/T0ACME-{file_id}/download/{file['name']}"
        return file

    def _file_host(self, path: str, headers: dict[str, str]) -> Answer:
        """files.slack.com: `POST /upload/v1/<file id>` takes an upload's bytes; `GET /files-pri/T-<file id>/…`
        serves a file to its workspace's bearer token (anyone else is redirected to the login page, as Slack does)."""
        with self._lock:
            if path.startswith("/upload/v1/"):
                file_id = path.removeprefix("/upload/v1/")
                self.calls.append(ApiCall("upload", {"file_id": file_id}, headers, dict(self.request_files)))
                if file_id not in self.pending_uploads:
                    return Answer(404, "Not Found")
                _, data = self.request_files.get("body", ("", b"", ""))[:2]
                self.file_bytes[file_id] = data
                return Answer(200, f"OK - {len(data)}")
            file_id = path.removeprefix("/files-pri/T0ACME-").split("/", 1)[0]
            self.calls.append(ApiCall("download", {"file_id": file_id}, headers))
            if headers.get("authorization") != f"Bearer {self.token}":
                return Answer(302, "", headers={"location": "https://acme.slack.com/?redir=%2Ffiles-pri"})
            if file_id not in self.file_bytes:
                return Answer(404, "Not Found")
            return Answer(200, self.file_bytes[file_id], content_type=self.files[file_id]["mimetype"])

    def _upload_url(self, params: Json) -> Answer:
        if not params.get("filename") or not str(params.get("length", "")).isdigit():
            return Answer(200, {"ok": False, "error": "invalid_arguments"})
        file_id = f"F0UP{next(self._ts):05d}"
        self.pending_uploads[file_id] = {"name": params["filename"], "length": int(params["length"])}
        return Answer(200, {"ok": True, "upload_url": f"{self.root}/upload/v1/{file_id}", "file_id": file_id})

    def _complete_upload(self, params: Json) -> Answer:
        files = json.loads(params["files"]) if isinstance(params.get("files"), str) else params.get("files")
        channel = str(params.get("channel_id", ""))
        if channel not in self.channels:
            return Answer(200, {"ok": False, "error": "channel_not_found"})
        done = []
        for item in files or []:
            pending = self.pending_uploads.pop(item["id"], None)
            data = self.file_bytes.get(item["id"])
            if pending is None or data is None or len(data) != pending["length"]:
                return Answer(200, {"ok": False, "error": "file_not_found"})
            ts = f"{1764170000 + next(self._ts)}.000200"
            share: Json = {"ts": ts, "channel_name": "general"}
            if params.get("thread_ts"):
                share["thread_ts"] = params["thread_ts"]
            self.files[item["id"]] = {
                "id": item["id"],
                "name": pending["name"],
                "title": item.get("title") or pending["name"],
                "mimetype": "application/octet-stream",
                "size": len(data),
                "shares": {"public": {channel: [share]}},
                "initial_comment": params.get("initial_comment"),
            }
            done.append({"id": item["id"], "title": item.get("title") or pending["name"]})
        return Answer(200, {"ok": True, "files": done})

    def _dispatch(self, path: str, params: Json, headers: dict[str, str]) -> Answer:
        if path.startswith(("/upload/v1/", "/files-pri/")):
            return self._file_host(path, headers)
        method = path.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append(ApiCall(method, params, headers))
            if method == "apps.connections.open":
                return self._connections_open(headers)
            if headers.get("authorization") != f"Bearer {self.token}":
                return Answer(200, {"ok": False, "error": "invalid_auth"})
            scripted = self._scripted(method)
            if scripted is not None:
                return scripted
            if method == "auth.test":
                return Answer(
                    200,
                    {
                        "ok": True,
                        "url": "https://acme.slack.com/",
                        "team": "Acme",
                        "user": "chatbox",
                        "team_id": "T0ACME",
                        "user_id": "U0BOT",
                        "bot_id": "B0BOT",
                        "is_enterprise_install": False,
                    },
                )
            if method == "chat.postMessage":
                channel = str(params.get("channel"))
                if channel not in self.channels:
                    return Answer(200, {"ok": False, "error": "channel_not_found"})
                ts = f"{int(time.time())}.{next(self._ts):06d}"  # Slack's ts: epoch seconds, unique per channel
                message: Json = {
                    "type": "message",
                    "user": "U0BOT",
                    "bot_id": "B0BOT",
                    "text": params["text"],
                    "ts": ts,
                }
                if params.get("thread_ts"):
                    message["thread_ts"] = params["thread_ts"]
                self.posted.setdefault(channel, []).append(message)
                return Answer(200, {"ok": True, "channel": channel, "ts": ts, "message": message})
            if method == "files.info":
                if str(params.get("file")) not in self.files:
                    return Answer(200, {"ok": False, "error": "file_not_found"})
                return Answer(200, {"ok": True, "file": self._file_object(str(params["file"]))})
            if method == "files.getUploadURLExternal":
                return self._upload_url(params)
            if method == "files.completeUploadExternal":
                return self._complete_upload(params)
            if method in ("chat.update", "chat.delete", "reactions.add", "reactions.remove"):
                return self._message_action(method, params)
            if method in ("conversations.history", "conversations.replies"):
                return self._history(method, params)
            if method == "users.info":
                user = self.users.get(str(params.get("user")))
                return Answer(200, {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"})
            if method == "conversations.info":
                found = self.channels.get(str(params.get("channel")))
                return Answer(
                    200, {"ok": True, "channel": found} if found else {"ok": False, "error": "channel_not_found"}
                )
            return Answer(200, {"ok": False, "error": "unknown_method"})

    def _message_action(self, method: str, params: Json) -> Answer:
        """chat.update / chat.delete (`channel`, `ts`) and reactions.add / .remove (`channel`, `timestamp`, `name`)."""
        channel = str(params.get("channel"))
        if channel not in self.channels:
            return Answer(200, {"ok": False, "error": "channel_not_found"})
        if method.startswith("reactions."):
            name = str(params.get("name", ""))
            if not params.get("timestamp"):
                return Answer(200, {"ok": False, "error": "no_item_specified"})
            if not name or ":" in name or not name.isascii():
                return Answer(200, {"ok": False, "error": "invalid_name"})
            return Answer(200, {"ok": True})
        ts = str(params.get("ts", ""))
        if not ts:
            return Answer(200, {"ok": False, "error": "message_not_found"})
        if method == "chat.update":
            return Answer(200, {"ok": True, "channel": channel, "ts": ts, "text": params.get("text", "")})
        return Answer(200, {"ok": True, "channel": channel, "ts": ts})

    def _history(self, method: str, params: Json) -> Answer:
        """conversations.history: the channel's top-level messages newest first, within `oldest`/`latest`;
        conversations.replies: the thread `ts` (its parent first, then replies oldest first)."""
        channel = str(params.get("channel"))
        if channel not in self.channels:
            return Answer(200, {"ok": False, "error": "channel_not_found"})
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or 9e12)
        messages = self.posted.get(channel, [])
        if method == "conversations.replies":
            root = str(params.get("ts"))
            found = [m for m in messages if m["ts"] == root or m.get("thread_ts") == root]
            found = [m for m in found if m["ts"] == root or oldest <= float(m["ts"]) <= latest]
            return Answer(200, {"ok": True, "messages": found, "has_more": False})
        top = [m for m in messages if not m.get("thread_ts") and oldest <= float(m["ts"]) <= latest]
        return Answer(200, {"ok": True, "messages": list(reversed(top)), "has_more": False})

    def _connections_open(self, headers: dict[str, str]) -> Answer:
        """Slack's answer to apps.connections.open: a one-use WebSocket URL, for an app-level token only."""
        presented = headers.get("authorization", "")
        if presented == f"Bearer {self.token}":
            return Answer(200, {"ok": False, "error": "not_allowed_token_type"})
        if self.app_token is None or presented != f"Bearer {self.app_token}":
            return Answer(200, {"ok": False, "error": "invalid_auth"})
        scripted = self._scripted("apps.connections.open")
        if scripted is not None:
            return scripted
        if self.socket is None:
            return Answer(200, {"ok": False, "error": "internal_error"})
        return Answer(200, {"ok": True, "url": self.socket.issue_url()})


def slack_rate_limit(retry_after: int) -> Answer:
    return Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})


def slack_signature_headers(signing_secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: `v0=` + hex HMAC-SHA256(secret, `v0:{timestamp}:{body}`)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(signing_secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json",
    }


@contextmanager
def running(stand_in: _StandIn) -> Iterator[_StandIn]:
    thread = threading.Thread(target=stand_in.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()
        thread.join(timeout=5)


@contextmanager
def running_telegram(tokens: dict[str, Json]) -> Iterator[TelegramBotApi]:
    api = TelegramBotApi(tokens)
    with running(api):
        yield api


@contextmanager
def running_slack(token: str, *, app_token: str | None = None) -> Iterator[SlackWebApi]:
    """The Web API stand-in; with `app_token`, a Socket Mode stand-in behind its apps.connections.open too
    (`api.socket`)."""
    if app_token is None:
        api = SlackWebApi(token)
        with running(api):
            yield api
        return
    with running_socket_mode() as socket:
        api = SlackWebApi(token, app_token=app_token, socket=socket)
        with running(api):
            yield api
