"""The Slack connector: signed Events API ingest, auth.test at create, chat.postMessage via slack-sdk.

Names of users and channels are not on the ingest path: `parse` reads them from a cache, and a
name it has not seen yet is fetched (users.info / conversations.info) on a background thread, so
the next message from that person or channel carries it.
"""

from __future__ import annotations

import http.client
import logging
import re
import threading
import time
import urllib.error
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web import SlackResponse, WebClient

from chatbox.domain.addresses import is_public_https_url
from chatbox.domain.errors import (
    ConnectorError,
    ConnectorUnavailableError,
    InvalidInputError,
    PlatformRefusedError,
    RateLimitedError,
    UnknownOutcomeError,
)
from chatbox.domain.message_split import split_text
from chatbox.ports.connector import ConnectionContext, OutboundMessage, SentMessage
from chatbox.ports.ingest import (
    IngestOutcome,
    Provisioned,
    ProvisionRequest,
    WebhookForbiddenError,
    WebhookRequest,
    WebhookUnauthenticatedError,
)
from chatbox.ports.live import RECEIVE_MODE, WEBHOOK_RECEIVE
from chatbox.ports.media import FetchedFile, FileRef, OutboundFile, SentFile, UploadLimit
from chatbox.ports.message_actions import MessageRef
from chatbox.ports.probe import ProbeResult
from connectors.slack import media
from connectors.slack.spec import SlackMode, SlackSendOptions
from connectors.slack.translate import (
    SlackIdentity,
    channel_display_name,
    envelope_to_outcome,
    escape_text,
    message_external_id,
    parse_event_body,
    thread_root,
    user_display_name,
)

log = logging.getLogger(__name__)

PLATFORM = "slack"
BOT_TOKEN = "bot_token"
SIGNING_SECRET = "signing_secret"
APP_TOKEN = "app_token"
EVENTS_RECEIVE = WEBHOOK_RECEIVE  # the Events API is Slack's webhook
SOCKET_RECEIVE = "socket"
MAX_MESSAGE = 40_000  # chat.postMessage truncates beyond this (counted after escaping)
# How far before an unanswered post the history lookup starts: Slack's clock and ours may differ a little. Kept
# short: an identical earlier message of the bot's within this window would be taken for the lost one.
LOOKUP_SKEW = 10.0
LOOKUP_LIMIT = 200
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")

# Errors that mean: this message or this channel will not work, whatever the timing.
REFUSALS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "thread_reply_not_found",
        "user_not_found",
        "cannot_dm_bot",
        "messages_tab_disabled",
        "duplicate_message_not_found",
    }
)
_HINTS = {
    "not_in_channel": "invite the bot to the channel first (/invite @bot)",
    "channel_not_found": "check the channel id, and that the bot was added to that private channel",
    "is_archived": "the channel is archived",
    "msg_too_long": "shorten the message",
}


def receive_mode_for(mode: SlackMode, ingest_url: str) -> str:
    """`webhook` (the Events API) or `socket` for a new connection: `auto` uses Socket Mode unless Slack could
    POST to the ingest URL."""
    if mode == "auto":
        return EVENTS_RECEIVE if is_public_https_url(ingest_url) else SOCKET_RECEIVE
    return EVENTS_RECEIVE if mode == "events" else SOCKET_RECEIVE


class NameCache:
    """Slack names by (connection, kind, id): read without blocking, filled in the background, kept `ttl` s."""

    def __init__(self, clients: SlackClients, *, ttl: float = 3600.0, capacity: int = 10_000) -> None:
        self.clients = clients
        self.ttl = ttl
        self.capacity = capacity
        self._names: OrderedDict[tuple[str, str, str], tuple[float, str | None]] = OrderedDict()
        self._pending: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slack-names")

    def lookup(self, connection: ConnectionContext, kind: str, item_id: str) -> str | None:
        """The cached name, or None (and a background fetch when it is unknown or stale)."""
        key = (connection.connection_id, kind, item_id)
        now = time.monotonic()
        with self._lock:
            cached = self._names.get(key)
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
            if key in self._pending:
                return cached[1] if cached else None
            self._pending.add(key)
        token = connection.secrets.get(BOT_TOKEN)
        if token:
            try:
                self._executor.submit(self._fetch, key, token)
            except RuntimeError:  # shut down
                pass
        return cached[1] if cached else None

    def _fetch(self, key: tuple[str, str, str], token: str) -> None:
        _, kind, item_id = key
        client = self.clients.get(token)
        name: str | None = None
        try:
            if kind == "user":
                name = user_display_name(client.users_info(user=item_id).get("user") or {})
            else:
                name = channel_display_name(client.conversations_info(channel=item_id).get("channel") or {})
        except (SlackClientError, OSError):
            log.info("could not resolve slack %s %s", kind, item_id, exc_info=True)
        with self._lock:
            self._pending.discard(key)
            self._names[key] = (time.monotonic(), name)
            self._names.move_to_end(key)
            while len(self._names) > self.capacity:
                self._names.popitem(last=False)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the fetches queued so far are done (tests, shutdown)."""
        self._executor.submit(lambda: None).result(timeout=timeout)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class SlackClients:
    """One WebClient per bot token (each is thread-safe: one urllib request per call)."""

    def __init__(self, api_root: str, timeout: int) -> None:
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        self.timeout = timeout
        self._clients: dict[str, WebClient] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> WebClient:
        with self._lock:
            client = self._clients.get(token)
            if client is None:
                # No retry handlers: the SDK's connection-error one re-posts after a reset, which may post a message
                # twice; 429s are handled in `send`, an unanswered post by a history lookup.
                client = WebClient(token=token, base_url=self.api_root, timeout=self.timeout, retry_handlers=[])
                self._clients[token] = client
            return client


class SlackConnector:
    """Slack behind the core's Connector and WebhookPlatform ports.

    Args:
        api_root: the Web API root (`CHATBOX_SLACK_API_URL`), e.g. `https://slack.com/api/`.
        max_retry_wait: a 429 whose Retry-After is at most this is waited out and retried once;
            a longer one is reported as RateLimitedError at once.
        mode: how new connections receive events (`CHATBOX_SLACK_MODE`, see `receive_mode_for`).
    """

    def __init__(
        self, api_root: str, *, max_retry_wait: float = 5.0, timeout: int = 10, mode: SlackMode = "auto"
    ) -> None:
        self.mode = mode
        self.clients = SlackClients(api_root, timeout)
        self.names = NameCache(self.clients)
        self.max_retry_wait = max_retry_wait
        self._files_client: httpx.Client | None = None
        self._files_lock = threading.Lock()

    # --- ingest -------------------------------------------------------------------------------

    def verify(self, connection: ConnectionContext, request: WebhookRequest) -> None:
        """Slack's v0 signature over `v0:{timestamp}:{raw body}`, timestamp within 300 s, constant-time compare."""
        signature = request.headers.get("x-slack-signature")
        timestamp = request.headers.get("x-slack-request-timestamp")
        if not signature or not timestamp:
            raise WebhookUnauthenticatedError("missing X-Slack-Signature or X-Slack-Request-Timestamp")
        secret = connection.secrets.get(SIGNING_SECRET)
        if not secret:
            raise WebhookUnauthenticatedError("this connection has no signing secret")
        # Checked before the SDK sees them: `hmac.compare_digest` raises TypeError on a non-ASCII str, and a
        # timestamp of a thousand digits overflows the float the SDK compares it with.
        if not _SIGNATURE.fullmatch(signature) or not _TIMESTAMP.fullmatch(timestamp):
            raise WebhookForbiddenError("invalid or stale X-Slack-Signature")
        try:
            valid = SignatureVerifier(secret).is_valid(request.body, timestamp, signature)
        except UnicodeDecodeError:  # a body that is not UTF-8
            valid = False
        if not valid:
            raise WebhookForbiddenError("invalid or stale X-Slack-Signature")

    def parse(self, connection: ConnectionContext, request: WebhookRequest) -> IngestOutcome:
        identity = SlackIdentity(
            bot_user_id=_str_or_none(connection.config.get("bot_user_id")),
            bot_id=_str_or_none(connection.config.get("bot_id")),
        )

        def names(kind: str, item_id: str) -> str | None:
            return self.names.lookup(connection, kind, item_id)

        return envelope_to_outcome(parse_event_body(request.body), identity, names)

    # --- lifecycle ----------------------------------------------------------------------------

    def provision(self, request: ProvisionRequest) -> Provisioned:
        """auth.test: checks the bot token and learns the bot's user id and bot id (to ignore its own messages).

        The receive mode (`receive_mode_for`) decides the other secret: the Events API needs the signing
        secret; Socket Mode needs the app-level token, checked with apps.connections.open.

        Raises:
            InvalidInputError: a secret the chosen mode needs is missing, or Slack refuses a token.
            ConnectorUnavailableError: Slack cannot be reached or rate-limits the check.
        """
        token = request.secrets.get(BOT_TOKEN)
        receive = receive_mode_for(self.mode, request.ingest_url)
        if receive == SOCKET_RECEIVE:
            app_token = request.secrets.get(APP_TOKEN)
            if not token or not app_token:
                raise InvalidInputError(
                    "a slack connection in Socket Mode needs secrets.bot_token (xoxb-…, OAuth & Permissions) and "
                    "secrets.app_token (xapp-…, Basic Information → App-Level Tokens, scope connections:write); "
                    "chatbox uses Socket Mode because CHATBOX_PUBLIC_URL is not a public https URL "
                    "(or CHATBOX_SLACK_MODE=socket)"
                )
            self._check_app_token(app_token)
        elif not token or not request.secrets.get(SIGNING_SECRET):
            raise InvalidInputError(
                "a slack connection needs secrets.bot_token (xoxb-…, OAuth & Permissions) and "
                "secrets.signing_secret (Basic Information → App Credentials)"
            )
        try:
            answer = self.clients.get(token).auth_test()
        except SlackApiError as exc:
            error = _error_code(exc.response)
            if exc.response.status_code == 429:
                raise ConnectorUnavailableError("Slack rate-limited auth.test; try again in a minute") from exc
            raise InvalidInputError(
                f"Slack refused secrets.bot_token (auth.test: {error}): use the app's Bot User OAuth Token (xoxb-…)"
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise ConnectorUnavailableError(f"Slack cannot be reached ({type(exc).__name__}); try again later") from exc
        learned = {"bot_user_id": "user_id", "bot_id": "bot_id", "team_id": "team_id", "team": "team"}
        config: dict[str, Any] = {
            key: answer.get(source) for key, source in learned.items() if isinstance(answer.get(source), str)
        }
        config[RECEIVE_MODE] = receive
        return Provisioned(config=config)

    def _check_app_token(self, app_token: str) -> None:
        """apps.connections.open with the app-level token: Slack answers a WebSocket URL only to a valid one
        of an app with Socket Mode on (the URL is not used; the live source opens its own)."""
        try:
            self.clients.get(app_token).apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            error = _error_code(exc.response)
            if exc.response.status_code == 429:
                raise ConnectorUnavailableError(
                    "Slack rate-limited apps.connections.open; try again in a minute"
                ) from exc
            raise InvalidInputError(
                f"Slack refused secrets.app_token (apps.connections.open: {error}): use an app-level token (xapp-…) "
                "with the connections:write scope, and turn Socket Mode on in the app's settings"
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise ConnectorUnavailableError(f"Slack cannot be reached ({type(exc).__name__}); try again later") from exc

    def deprovision(self, connection: ConnectionContext) -> None:
        """Nothing to undo on Slack: the Event Subscriptions URL lives in the app's settings."""

    # --- probe (chatbox doctor) ----------------------------------------------------------------

    def check(self, ctx: ConnectionContext, *, ingest_url: str) -> list[ProbeResult]:  # noqa: ARG002
        """auth.test with the bot token, in either receive mode. The Events API URL lives in the app's settings,
        where no API reads it back; Socket Mode's app token is not probed (apps.connections.open would hand out a
        new socket URL, an action rather than a check): the live source reports a refused one on the connection."""
        try:
            answer = self.clients.get(ctx.secrets.get(BOT_TOKEN, "")).auth_test()
        except SlackApiError as exc:
            return [
                ProbeResult(
                    "slack bot token",
                    "fail",
                    f"Slack refused auth.test: {_error_code(exc.response)}",
                    "PATCH the connection's secrets.bot_token with the app's Bot User OAuth Token (xoxb-…)",
                )
            ]
        except (SlackClientError, OSError) as exc:
            detail = f"Slack cannot be reached ({type(exc).__name__})"
            return [ProbeResult("slack bot token", "fail", detail, "check CHATBOX_SLACK_API_URL and the network")]
        return [ProbeResult("slack bot token", "ok", f"auth.test answers team {answer.get('team')}")]

    # --- send ---------------------------------------------------------------------------------

    def send(self, ctx: ConnectionContext, msg: OutboundMessage) -> SentMessage:
        """chat.postMessage with mrkdwn-safe text; in a thread when `options.thread_ts` or `reply_to` says so.

        Returns `"{channel}:{ts}"`, or `"{channel}:{thread_ts}:{ts}"` in a thread (the first part's id when
        a very long text goes out as several messages), and every part's id. Parts in `msg.parts_sent` are not
        posted again. A post that left and got no answer (a read timeout, a reset), or the part an earlier
        attempt left so (`msg.uncertain_since`), is looked up in the channel's history (conversations.history,
        or conversations.replies in a thread): a message from this bot with the same text since the attempt
        began is that part. Found, the send goes on; not found right after the post, it is UnknownOutcomeError
        (Slack may still be posting it); not found on a later attempt, the part is posted.
        """
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(f"the slack connection {ctx.connection_id} has no bot_token")
        options = SlackSendOptions.model_validate(msg.options)
        client = self.clients.get(token)
        explicit = options.thread_ts
        thread_ts = thread_root(explicit) if explicit else thread_root(msg.reply_to) if msg.reply_to else None
        parts = [escape_text(part) for part in split_text(msg.text, MAX_MESSAGE, lambda chunk: len(escape_text(chunk)))]
        ids = list(msg.parts_sent[: len(parts)])
        lookup = _Lookup(client, msg.chat_id, thread_ts, ctx.config)
        try:
            if msg.uncertain_since is not None and len(ids) < len(parts):
                found = lookup.find(parts[len(ids)], msg.uncertain_since, ids)
                if found is not None:
                    ids.append(found)
            for index in range(len(ids), len(parts)):
                arguments: dict[str, Any] = {"channel": msg.chat_id, "text": parts[index]}
                if thread_ts:
                    arguments["thread_ts"] = thread_ts
                    if options.reply_broadcast:
                        arguments["reply_broadcast"] = True
                if options.unfurl_links is not None:
                    arguments["unfurl_links"] = options.unfurl_links
                started = time.time()
                try:
                    answer = self._post(client, arguments, msg.chat_id)
                except _NoAnswer as exc:
                    found = lookup.find(parts[index], started, ids)
                    if found is None:
                        raise UnknownOutcomeError(
                            f"Slack did not answer chat.postMessage to {msg.chat_id} ({exc.kind} after the request "
                            "left), and the channel's history shows no such message from the bot yet: it may still "
                            "appear; calling again with the same idempotency_key looks again before posting"
                        ) from exc
                    ids.append(found)
                    continue
                answered = answer.get("channel")
                channel = answered if isinstance(answered, str) else msg.chat_id
                ids.append(message_external_id(channel, str(answer.get("ts")), thread_ts))
        except ConnectorError as exc:
            exc.parts_sent = tuple(ids)
            exc.parts_total = len(parts)
            raise
        return SentMessage(ids[0], tuple(ids))

    def _post(self, client: WebClient, arguments: dict[str, Any], channel: str) -> SlackResponse:
        for attempt in (1, 2):
            try:
                return client.chat_postMessage(**arguments)
            except SlackApiError as exc:
                response = exc.response
                error = _error_code(response)
                if response.status_code == 429 or error == "ratelimited":
                    wait = _retry_after(response)
                    if attempt == 1 and wait is not None and wait <= self.max_retry_wait:
                        time.sleep(wait)
                        continue
                    advice = f"wait {wait:g}s before sending again" if wait is not None else "slow down"
                    raise RateLimitedError(f"Slack rate limit for channel {channel}: {advice}", wait) from exc
                if error in REFUSALS:
                    hint = _HINTS.get(error, "change the message or the channel")
                    raise PlatformRefusedError(f"Slack refused the message to {channel}: {error}; {hint}") from exc
                raise ConnectorUnavailableError(
                    f"Slack failed chat.postMessage ({error}); the operator may need to fix the bot's token or scopes"
                ) from exc
            except urllib.error.URLError as exc:
                # urllib raises URLError while connecting and writing the request: Slack never got a whole request.
                raise ConnectorUnavailableError(
                    f"Slack cannot be reached ({type(exc).__name__}); try again later"
                ) from exc
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                # Raised while waiting for the answer: the request left, Slack may have posted it.
                raise _NoAnswer(type(exc).__name__) from exc
            except (SlackClientError, OSError) as exc:
                raise ConnectorUnavailableError(
                    f"Slack cannot be reached ({type(exc).__name__}); try again later"
                ) from exc
        raise AssertionError("unreachable")

    # --- media (chatbox.ports.media) ----------------------------------------------------------

    def _token(self, ctx: ConnectionContext) -> str:
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(f"the slack connection {ctx.connection_id} has no bot_token")
        return token

    @property
    def _files_http(self) -> httpx.Client:
        """For Slack's file host only (built on first use); no redirects, no proxy from the environment."""
        with self._files_lock:
            if self._files_client is None:
                self._files_client = httpx.Client(timeout=self.clients.timeout, follow_redirects=False, trust_env=False)
            return self._files_client

    def fetch_attachment(self, ctx: ConnectionContext, ref: FileRef, *, max_bytes: int) -> FetchedFile:
        """files.info, then the file's private URL with the bot token (`connectors.slack.media`)."""
        token = self._token(ctx)
        return media.fetch_attachment(
            self.clients.get(token), self._files_http, token, self.clients.api_root, ref, max_bytes
        )

    def upload_limit(self, ctx: ConnectionContext, mime_type: str) -> UploadLimit:  # noqa: ARG002
        return media.upload_limit()

    def send_file(self, ctx: ConnectionContext, file: OutboundFile) -> SentFile:
        """The upload flow v2 into the channel (the thread of `reply_to`), with the caption as its comment."""
        return media.send_file(self.clients.get(self._token(ctx)), file)

    # --- message actions (chatbox.ports.message_actions); Slack's Web API has no typing indicator for bots -----

    action_notes = (
        "Slack has no typing indicator for bots, and names reactions (`:thumbsup:`): react takes a name or a common "
        "emoji character; a reaction to a thread reply names it without its thread."
    )

    def edit_message(self, ctx: ConnectionContext, target: MessageRef, text: str) -> None:
        """chat.update of the message's `ts` (a text too long for one Slack message is refused, not split)."""
        if len(escape_text(text)) > MAX_MESSAGE:
            raise PlatformRefusedError(f"a Slack message holds {MAX_MESSAGE} characters at most; shorten the text")
        self._act(
            ctx,
            "chat.update",
            {"channel": target.chat_id, "ts": message_ts(target.message_id), "text": escape_text(text)},
        )

    def delete_message(self, ctx: ConnectionContext, target: MessageRef) -> None:
        self._act(ctx, "chat.delete", {"channel": target.chat_id, "ts": message_ts(target.message_id)})

    def react(self, ctx: ConnectionContext, target: MessageRef, emoji: str, *, remove: bool) -> None:
        """reactions.add / reactions.remove with Slack's name for the emoji."""
        name = emoji_name(emoji)
        if name is None:
            raise PlatformRefusedError(
                f"Slack names reactions: pass the emoji's name (e.g. thumbsup, heart, eyes) instead of {emoji}"
            )
        method = "reactions.remove" if remove else "reactions.add"
        self._act(ctx, method, {"channel": target.chat_id, "timestamp": message_ts(target.message_id), "name": name})

    def _act(self, ctx: ConnectionContext, method: str, arguments: dict[str, Any]) -> None:
        token = ctx.secrets.get(BOT_TOKEN)
        if not token:
            raise ConnectorUnavailableError(f"the slack connection {ctx.connection_id} has no bot_token")
        channel = str(arguments["channel"])
        try:
            self.clients.get(token).api_call(method, json=arguments)
        except SlackApiError as exc:
            response = exc.response
            error = _error_code(response)
            if response.status_code == 429 or error == "ratelimited":
                wait = _retry_after(response)
                advice = f"wait {wait:g}s before trying again" if wait is not None else "slow down"
                raise RateLimitedError(f"Slack rate limit for channel {channel}: {advice}", wait) from exc
            if error in ACTION_REFUSALS or error in REFUSALS:
                raise PlatformRefusedError(f"Slack refused {method} in {channel}: {error}") from exc
            raise ConnectorUnavailableError(
                f"Slack failed {method} ({error}); the operator may need to add the bot's scopes "
                "(chat:write, reactions:write)"
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise ConnectorUnavailableError(f"Slack cannot be reached ({type(exc).__name__}); try again later") from exc

    def close(self) -> None:
        self.names.close()
        with self._files_lock:
            client, self._files_client = self._files_client, None
        if client is not None:
            client.close()


# What Slack answers when the message or the reaction is not as asked: the agent's to fix, not the operator's.
ACTION_REFUSALS = frozenset(
    {
        "message_not_found",
        "cant_update_message",
        "cant_delete_message",
        "edit_window_closed",
        "already_reacted",
        "no_reaction",
        "invalid_name",
        "too_many_emoji",
        "too_many_reactions",
        "msg_too_long",
        "no_text",
        "is_archived",
    }
)

# Slack names emoji; the agent writes characters. The common ones, by Slack's names.
EMOJI_NAMES = {
    "👍": "+1",
    "👎": "-1",
    "❤️": "heart",
    "❤": "heart",
    "😂": "joy",
    "😄": "smile",
    "😊": "blush",
    "🙂": "slightly_smiling_face",
    "😉": "wink",
    "😮": "open_mouth",
    "😢": "cry",
    "😭": "sob",
    "😡": "rage",
    "🙏": "pray",
    "👏": "clap",
    "🎉": "tada",
    "🔥": "fire",
    "👀": "eyes",
    "✅": "white_check_mark",
    "✔️": "heavy_check_mark",
    "❌": "x",
    "🤔": "thinking_face",
    "💯": "100",
    "🚀": "rocket",
    "👋": "wave",
    "🙌": "raised_hands",
    "💪": "muscle",
    "⭐": "star",
    "👌": "ok_hand",
}


def emoji_name(emoji: str) -> str | None:
    """Slack's name for an emoji: `:thumbsup:` or `thumbsup` as written, a common character by the table; None
    for a character the table does not know."""
    text = emoji.strip()
    if text in EMOJI_NAMES:
        return EMOJI_NAMES[text]
    name = text.strip(":")
    if name and name.isascii() and all(c.isalnum() or c in "_+-'" for c in name):
        return name.lower()
    return None


def message_ts(message_id: str) -> str:
    """The `ts` inside a chatbox message id (`"C:ts"`, `"C:thread:ts"`) or a bare ts."""
    return message_id.rsplit(":", 1)[-1]


class _NoAnswer(Exception):
    """chat.postMessage left and no answer came back (`kind` names the exception)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class _Lookup:
    """Finds a message this bot posted in a channel (or thread) since a moment, by its exact (escaped) text."""

    def __init__(self, client: WebClient, channel: str, thread_ts: str | None, config: Any) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.bot_id = _str_or_none(config.get("bot_id"))
        self.bot_user_id = _str_or_none(config.get("bot_user_id"))

    def find(self, text: str, since: float, taken: list[str]) -> str | None:
        """The id of the oldest matching message at or after `since` (less the skew) not among `taken`, or None.

        Raises:
            UnknownOutcomeError: Slack would not answer the lookup (a scope missing, down, rate limited).
        """
        oldest = f"{max(0.0, since - LOOKUP_SKEW):.6f}"
        try:
            if self.thread_ts:
                answer = self.client.conversations_replies(
                    channel=self.channel, ts=self.thread_ts, oldest=oldest, inclusive=True, limit=LOOKUP_LIMIT
                )
            else:
                answer = self.client.conversations_history(
                    channel=self.channel, oldest=oldest, inclusive=True, limit=LOOKUP_LIMIT
                )
        except SlackApiError as exc:
            raise UnknownOutcomeError(
                f"Slack did not answer a post to {self.channel}, and chatbox could not look it up in the history "
                f"({_error_code(exc.response)}; the bot needs the channels:history, groups:history and im:history "
                "scopes): the outcome is unknown - check the channel before resending"
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise UnknownOutcomeError(
                f"Slack did not answer a post to {self.channel}, and its history could not be read either "
                f"({type(exc).__name__}): the outcome is unknown - call again with the same idempotency_key to look "
                "again"
            ) from exc
        messages = answer.get("messages")
        candidates = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        matching = sorted(
            (str(m["ts"]) for m in candidates if self._is_ours(m, text) and isinstance(m.get("ts"), str)),
            key=float,
        )
        for ts in matching:
            external_id = message_external_id(self.channel, ts, self.thread_ts)
            if float(ts) >= float(oldest) and external_id not in taken:
                return external_id
        return None

    def _is_ours(self, message: dict[str, Any], text: str) -> bool:
        if message.get("text") != text:
            return False
        if self.thread_ts and message.get("ts") == self.thread_ts:
            return False  # the thread's parent is never the reply being looked for
        if self.bot_id is None and self.bot_user_id is None:
            return "bot_id" in message
        return (self.bot_id is not None and message.get("bot_id") == self.bot_id) or (
            self.bot_user_id is not None and message.get("user") == self.bot_user_id
        )


def _error_code(response: SlackResponse) -> str:
    data = response.data if isinstance(response.data, dict) else {}
    error = data.get("error")
    return error if isinstance(error, str) else f"HTTP {response.status_code}"


def _retry_after(response: SlackResponse) -> float | None:
    for name, value in (response.headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
