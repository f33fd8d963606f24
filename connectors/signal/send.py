"""Outbound: the contract's send request → signal-cli's JSON-RPC `send`, and its answers → the contract.

| signal-cli says | the connector answers |
|---|---|
| `{"timestamp", "results": [...]}` with a SUCCESS | 200 `{"message_id": "<account>:<timestamp>"}` |
| results: only UNREGISTERED_FAILURE | 404 `unregistered_recipient` |
| results: IDENTITY_FAILURE | 403 `untrusted_identity` (the safety number changed: trust it on the daemon) |
| results: RATE_LIMIT_FAILURE, or error -5 | 429 with `retryAfterSeconds` when given |
| results: NETWORK_FAILURE / INVALID_PRE_KEY_FAILURE | 503 |
| error -1 (user error: unknown group, bad number, ...) | 400 `signal_refused` with signal-cli's message |
| error -4 (untrusted key) | 403 `untrusted_identity` |
| error -32600 / -32602 (invalid request or params) | 400 `signal_refused` |
| error -3 (I/O), -32603, other codes; daemon unreachable | 503 |
| the daemon took the request and did not answer (timeout, reset) | 504 `unknown_outcome` |

Signal has no idempotency token and no way to look a sent message up, so the program's record is the
lookup: the relay remembers each `request_id`'s answer (`connectors.relay.server`), and a retry of a send it
has no record of after an unanswered attempt (`uncertain_since`) is `unknown_outcome`, never sent again.
"""

from __future__ import annotations

import re
from typing import Any

from connectors.relay.server import (
    ActionHandler,
    ActionRequest,
    OutcomeUnknown,
    PlatformDown,
    RateLimited,
    SendRefused,
    SendRequest,
)
from connectors.signal.rpc import RpcError, SignalCli, SignalCliUnreachable
from connectors.signal.translate import message_key, parse_message_key

USER_ERROR = -1
IO_ERROR = -3
UNTRUSTED_KEY_ERROR = -4
RATE_LIMIT_ERROR = -5
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
DEFAULT_RETRY_AFTER = 60.0

_PHONE = re.compile(r"^\+[1-9][0-9]{4,17}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_USERNAME = re.compile(r"^u:[A-Za-z0-9_.]{3,64}$")


def is_direct_chat(chat_id: str) -> bool:
    """A number, an ACI or a `u:username` is a person; anything else is a group id (base64)."""
    return bool(_PHONE.match(chat_id) or _UUID.match(chat_id) or _USERNAME.match(chat_id))


def send_params(request: SendRequest) -> dict[str, Any]:
    """The JSON-RPC `send` params for `request`; raises `SendRefused` (422) for an unusable `reply_to`."""
    params: dict[str, Any] = {"message": request.text}
    direct = is_direct_chat(request.chat_id)
    if direct:
        params["recipient"] = [request.chat_id]
    else:
        params["groupId"] = request.chat_id
    if request.reply_to:
        parsed = parse_message_key(request.reply_to)
        if parsed is None:
            raise SendRefused(422, "invalid_reply_to", "reply_to must be a message id: <author>:<timestamp>")
        author, timestamp = parsed
        if author is None:
            if not direct:
                raise SendRefused(422, "invalid_reply_to", "in a group, reply_to must be <author>:<timestamp>")
            author = request.chat_id  # a bare timestamp in a direct chat: the other party's message
        params["quoteTimestamp"] = timestamp
        params["quoteAuthor"] = author
    return params


async def send_message(cli: SignalCli, account: str, request: SendRequest) -> str:
    """Send `request` through signal-cli; the message id in the form inbound messages use."""
    params = send_params(request)
    if request.uncertain_since is not None:
        raise OutcomeUnknown(
            "an earlier attempt at this message got no answer and this connector has no record of its outcome "
            "(it restarted since, or the daemon never answered): Signal offers no lookup, so whether it was "
            "delivered is unknown - check the chat before resending"
        )
    try:
        result = await cli.call("send", params)
    except SignalCliUnreachable as exc:
        if exc.left:
            raise OutcomeUnknown(
                f"{exc}: signal-cli took the send and did not answer; whether Signal delivered it is unknown - "
                "check the chat before resending"
            ) from None
        raise PlatformDown(str(exc)) from None
    except RpcError as exc:
        raise _refusal(exc) from None
    if not isinstance(result, dict) or not isinstance(result.get("timestamp"), int):
        raise PlatformDown("signal-cli answered the send without a timestamp")
    _check_results(result.get("results"))
    return message_key(account, result["timestamp"])


def _check_results(results: Any) -> None:
    """Raise for a send that reached nobody; a group send that reached some members counts as sent."""
    if not isinstance(results, list) or not results:
        return
    types = [r.get("type") for r in results if isinstance(r, dict)]
    if "SUCCESS" in types or not types:
        return
    if "RATE_LIMIT_FAILURE" in types:
        waits = [r.get("retryAfterSeconds") for r in results if isinstance(r, dict)]
        known = [float(w) for w in waits if isinstance(w, int | float) and w >= 0]
        raise RateLimited(max(known) if known else DEFAULT_RETRY_AFTER, "Signal is rate limiting this account")
    if "IDENTITY_FAILURE" in types:
        raise SendRefused(
            403,
            "untrusted_identity",
            "the recipient's safety number changed; trust it on the signal-cli daemon before sending again",
        )
    if all(t == "UNREGISTERED_FAILURE" for t in types):
        raise SendRefused(404, "unregistered_recipient", "the recipient is not registered on Signal")
    raise PlatformDown("Signal could not deliver the message (network); try again later")


def _refusal(error: RpcError) -> Exception:
    data = error.data if isinstance(error.data, dict) else {}
    response = data.get("response")
    if isinstance(response, dict):
        try:
            _check_results(response.get("results"))
        except (SendRefused, RateLimited, PlatformDown) as mapped:
            return mapped
    message = error.message or "signal-cli refused the send"
    if error.code == RATE_LIMIT_ERROR:
        return RateLimited(DEFAULT_RETRY_AFTER, f"Signal is rate limiting this account: {message}")
    if error.code == UNTRUSTED_KEY_ERROR:
        return SendRefused(403, "untrusted_identity", message)
    if error.code in (USER_ERROR, INVALID_REQUEST, INVALID_PARAMS):
        return SendRefused(400, "signal_refused", message)
    return PlatformDown(f"signal-cli failed to send (error {error.code}): {message}")


# --- message actions (CONTRACT.md, "Message actions") ------------------------------------------------------------


def _chat_params(chat_id: str) -> dict[str, Any]:
    return {"recipient": [chat_id]} if is_direct_chat(chat_id) else {"groupId": chat_id}


def _target(request: ActionRequest, *, own: str | None = None) -> tuple[str, int]:
    """The author and timestamp of the message acted on; `own` (our account) when only our messages qualify."""
    parsed = parse_message_key(request.message_id or "")
    if parsed is None:
        raise SendRefused(422, "invalid_message_id", "message_id must be a message id: <author>:<timestamp>")
    author, timestamp = parsed
    if author is None:
        author = own or (request.chat_id if is_direct_chat(request.chat_id) else None)
    if author is None:
        raise SendRefused(422, "invalid_message_id", "in a group, message_id must be <author>:<timestamp>")
    if own is not None and author != own:
        raise SendRefused(403, "not_own_message", "only this account's own messages can be edited or deleted")
    return author, timestamp


async def _call(cli: SignalCli, method: str, params: dict[str, Any]) -> Any:
    try:
        result = await cli.call(method, params)
    except SignalCliUnreachable as exc:
        raise PlatformDown(str(exc)) from None
    except RpcError as exc:
        raise _refusal(exc) from None
    if isinstance(result, dict):
        _check_results(result.get("results"))
    return result


def signal_actions(cli: SignalCli, account: str) -> dict[str, ActionHandler]:
    """signal-cli's JSON-RPC for each action: `send` with `editTimestamp`, `remoteDelete`, `sendReaction`,
    `sendTyping`."""

    async def edit(request: ActionRequest) -> None:
        _, timestamp = _target(request, own=account)
        await _call(cli, "send", {**_chat_params(request.chat_id), "message": request.text, "editTimestamp": timestamp})

    async def delete(request: ActionRequest) -> None:
        _, timestamp = _target(request, own=account)
        await _call(cli, "remoteDelete", {**_chat_params(request.chat_id), "targetTimestamp": timestamp})

    async def react(request: ActionRequest) -> None:
        author, timestamp = _target(request)
        params = {
            **_chat_params(request.chat_id),
            "emoji": request.emoji,
            "targetAuthor": author,
            "targetTimestamp": timestamp,
            "remove": request.remove,
        }
        await _call(cli, "sendReaction", params)

    async def typing(request: ActionRequest) -> None:
        await _call(cli, "sendTyping", _chat_params(request.chat_id))

    return {"edit": edit, "delete": delete, "react": react, "typing": typing}
