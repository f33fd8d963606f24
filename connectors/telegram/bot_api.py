"""A small synchronous client of the Telegram Bot API: `POST {api_root}/bot{token}/{method}` with a JSON body.

chatbox's services are synchronous and call connectors from worker threads, so the connector talks to
the Bot API with one pooled `httpx.Client` and no event loop of its own. The client owns the transport:
an answer `{"ok": true, "result": ...}` gives `result`; `{"ok": false, ...}` raises `BotApiError` for the
connector to map; no answer, or one that is not JSON, raises `ConnectorUnavailableError`.

The bot token is part of the URL path, and httpx names a request's URL in its INFO log line
(`HTTP Request: POST …`) and on its exceptions. So the request httpx builds carries the placeholder
`/bot***/`, and the transport under the client (`_TokenInPath`) puts the token in only on the way to
the network: httpx's log lines, exceptions and responses never hold it.

Example:
    ```python
    api = BotApiClient("https://api.telegram.org", timeout=10.0)
    me = api.call(token, "getMe")  # {"id": 7012345678, "is_bot": True, "username": "...", ...}
    ```
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from chatbox.domain.errors import ConnectorUnavailableError, UnknownOutcomeError

TOKEN_PLACEHOLDER = "***"
_PLACEHOLDER_PATH = f"/bot{TOKEN_PLACEHOLDER}/".encode()
_TOKEN_EXTENSION = "chatbox.telegram.bot_token"


class BotApiError(Exception):
    """The Bot API answered `{"ok": false, ...}` for `method`.

    `error_code` is Telegram's (the HTTP status when the body has none); `description` its text, e.g.
    "Bad Request: chat not found"; `retry_after` (seconds) and `migrate_to_chat_id` come from `parameters`.
    """

    def __init__(
        self,
        method: str,
        error_code: int,
        description: str,
        *,
        retry_after: float | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(f"{method}: {error_code} {description}")
        self.method = method
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id


class BotApiClient:
    """One pooled HTTP client for every bot of a connector; thread-safe, built on the first call.

    Args:
        api_root: the Bot API root, e.g. `https://api.telegram.org` or a local Bot API server.
        timeout: seconds for each phase of a call (connect, write, read, pool).
    """

    def __init__(self, api_root: str, *, timeout: float) -> None:
        self.api_root = api_root.rstrip("/")
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._closed = False

    def call(self, token: str, method: str, params: Mapping[str, Any] | None = None, *, acts: bool = False) -> Any:
        """`method` with `params` as its JSON body; returns the answer's `result`.

        `acts`: the method changes something on Telegram (sendMessage), so a request that left and got no answer
        (a read timeout, a reset) may have acted: that is `UnknownOutcomeError`, never "try
        again". Only a request that never left (no connection) is `ConnectorUnavailableError` then.

        Raises:
            BotApiError: Telegram answered `ok: false` (refusals, 401 for a wrong token, 429 with retry_after).
            UnknownOutcomeError: with `acts`, the request left and no usable answer came back.
            ConnectorUnavailableError: no answer in time, Telegram unreachable, an answer that is not the
                Bot API's JSON, or the client is closed.
        """
        url = f"{self.api_root}/bot{TOKEN_PLACEHOLDER}/{method}"
        try:
            response = self._http().post(url, json=dict(params or {}), extensions={_TOKEN_EXTENSION: token})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectorUnavailableError(
                f"Telegram cannot be reached ({type(exc).__name__} on {method}); try again later"
            ) from exc
        except httpx.HTTPError as exc:
            if acts:
                raise UnknownOutcomeError(
                    f"Telegram did not answer {method} ({type(exc).__name__} after the request left): the message "
                    "may or may not have been posted, and Telegram offers no way to look a sent message up; the "
                    "outcome is unknown - check the chat before resending"
                ) from exc
            if isinstance(exc, httpx.TimeoutException):
                raise ConnectorUnavailableError(f"Telegram did not answer {method} in time; try again later") from exc
            # The type, not str(exc): a message is shown to agents and operators; the cause keeps the detail.
            raise ConnectorUnavailableError(
                f"Telegram cannot be reached ({type(exc).__name__} on {method}); try again later"
            ) from exc
        return _result_or_raise(method, response)

    def call_multipart(
        self, token: str, method: str, fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]]
    ) -> Any:
        """`method` as `multipart/form-data` (how the Bot API takes an uploaded file): `fields` as form fields
        (objects such as `reply_parameters` JSON-serialized), `files` as `{field: (filename, bytes, mime type)}`.
        Every multipart method posts (sendPhoto, sendDocument), so raises as `call` with `acts`."""
        url = f"{self.api_root}/bot{TOKEN_PLACEHOLDER}/{method}"
        try:
            response = self._http().post(
                url, data=dict(fields), files=dict(files), extensions={_TOKEN_EXTENSION: token}
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ConnectorUnavailableError(
                f"Telegram cannot be reached ({type(exc).__name__} on {method}); try again later"
            ) from exc
        except httpx.HTTPError as exc:
            raise UnknownOutcomeError(
                f"Telegram did not answer {method} ({type(exc).__name__} after the upload began): the file may or "
                "may not have been posted, and Telegram offers no way to look a sent message up; the outcome is "
                "unknown - check the chat before resending"
            ) from exc
        return _result_or_raise(method, response)

    def open_file(self, token: str, file_path: str) -> httpx.Response:
        """`GET {api_root}/file/bot{token}/{file_path}` (a getFile result's path), streamed: the caller reads
        `iter_bytes()` and closes it. Raises ConnectorUnavailableError when Telegram cannot be reached."""
        url = f"{self.api_root}/file/bot{TOKEN_PLACEHOLDER}/{quote(file_path, safe='/')}"
        client = self._http()
        try:
            request = client.build_request("GET", url, extensions={_TOKEN_EXTENSION: token})
            return client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ConnectorUnavailableError(
                f"Telegram cannot be reached ({type(exc).__name__} on a file download); try again later"
            ) from exc

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise ConnectorUnavailableError("the telegram connector is closed")
            if self._client is None:
                self._client = httpx.Client(
                    transport=_TokenInPath(httpx.HTTPTransport(trust_env=False)),
                    timeout=self.timeout,
                    trust_env=False,
                    follow_redirects=False,
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _result_or_raise(method: str, response: httpx.Response) -> Any:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ConnectorUnavailableError(
            f"Telegram answered {method} with HTTP {status} and no Bot API JSON; try again later"
        )
    if body.get("ok") is True and response.is_success:
        return body.get("result")
    description = body.get("description")
    parameters = body.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    retry_after = _number(parameters.get("retry_after"))
    raise BotApiError(
        method,
        _integer(body.get("error_code")) or status,
        description if isinstance(description, str) and description else f"HTTP {status}",
        retry_after=float(retry_after) if retry_after is not None else None,
        migrate_to_chat_id=_integer(parameters.get("migrate_to_chat_id")),
    )


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


class _TokenInPath(httpx.BaseTransport):
    """Swaps the `/bot***/` placeholder for the token carried in the request's extensions, on a copy of
    the request that only the network transport sees (see the module docstring)."""

    def __init__(self, network: httpx.BaseTransport) -> None:
        self._network = network

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        extensions = dict(request.extensions)
        token = extensions.pop(_TOKEN_EXTENSION, None)
        url = request.url
        if isinstance(token, str):
            # Quoted, so a malformed token cannot reach another path; real tokens (digits:A-Za-z0-9_-) are unchanged.
            in_path = b"/bot" + quote(token, safe=":").encode() + b"/"
            url = url.copy_with(raw_path=url.raw_path.replace(_PLACEHOLDER_PATH, in_path, 1))
        wire = httpx.Request(request.method, url, headers=request.headers, stream=request.stream, extensions=extensions)
        return self._network.handle_request(wire)

    def close(self) -> None:
        self._network.close()
