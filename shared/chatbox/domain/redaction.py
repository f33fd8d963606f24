"""Secrets out of log lines: what a secret looks like, the secrets this process holds, and the logging
pieces every composition root installs (the CLI, `chatbox dev`'s uvicorn, the Lambda functions).

A log line is redacted, never refused. Two nets catch a secret:

- **Shapes** (`redact`): URL userinfo (`https://user:pass@host` -> `https://[REDACTED]@host`), every
  query and fragment value of an absolute URL, secret-named parameters anywhere (`?token=`,
  `api_key=`, `"bot_token": "…"`, `X-…-Secret-Token: …`), Telegram `bot<id>:<token>` paths and bare
  bot tokens, `Bearer`/`Basic` values, chatbox's own tokens (`cbk_`, `mcp_`, `inb_`, `whsec_`),
  Slack (`xox?-`, `xapp-`, hooks.slack.com paths), Discord (bot tokens, webhook paths), AWS access
  key ids and JWTs.
- **Values** (`register_secret`): the secrets this process has held, whatever their shape. The
  vault registers every value it seals or opens and its own keys; the composition root registers the
  secret settings. At most `MAX_REGISTERED_SECRETS` are kept (least recently used go first), and values
  shorter than `MIN_SECRET_LENGTH`, or that are chatbox resource ids, are not registered: redacting
  every `12345` or a tenant's own mailbox id would make the logs useless, not safer.

The logging side (`install_log_redaction`) redacts each record when it is created (a record factory,
so every handler sees it redacted, including ones added later such as uvicorn's, pytest's or the
Lambda runtime's) and again at the handlers it finds (`RedactingFilter`, for records made elsewhere).
A record's message, args, exception text and stack text are redacted as it is made; its `extra` fields,
set after, by the filters and by the formatters the roots use (`RedactingFormatter`, and the Lambda
logger's JSON formatter, which redacts the whole entry).

Example:
    ```python
    install_log_redaction()
    logging.getLogger("httpx").info("HTTP Request: %s %s", "POST", "https://u:p@hooks.test/x?token=abc")
    # -> HTTP Request: POST https://[REDACTED]@hooks.test/x?token=[REDACTED]
    ```
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8
MAX_REGISTERED_SECRETS = 4096

# --- shapes -----------------------------------------------------------------------------------------

# A parameter or field whose name ends in one of these words holds a secret (`api_key`, `X-Amz-Signature`,
# `hub.verify_token`, `client_secret`); `code` (OAuth), `sid` and `jwt` only as the whole name.
_SECRET_NAME = re.compile(
    r"(?i)(?:.*?(?:token|secret|password|passwd|pwd|passphrase|apikey|key|sig|signature|auth|authorization"
    r"|credential|cookie)s?|code|sid|jwt)"
)
# Characters a value may hold inside a log line: never a quote or a backslash (a JSON log stays valid).
_VALUE = r"[^\s&;,'\"\\<>(){}\[\]]+"

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s'\"\\<>]+")
_URL_PARTS = re.compile(
    r"^(?P<scheme>[^:]+://)(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?P<query>\?[^#]*)?(?P<frag>#.*)?$"
)
_PARAM = re.compile(r"(?P<name>[^=&;#?]*)(?P<eq>=?)(?P<value>[^&;]*)")


def _if_secret_name(replacement: str) -> Callable[[re.Match[str]], str]:
    """A replacement applied only when the match's `name` group names a secret; the match is kept otherwise."""

    def replace(match: re.Match[str]) -> str:
        return match.expand(replacement) if _SECRET_NAME.fullmatch(match.group("name")) else match.group(0)

    return replace


def _redact_quoted_field(match: re.Match[str]) -> str:
    name = match.group("name") or match.group("pname")
    if not _SECRET_NAME.fullmatch(name):
        return match.group(0)
    return f'{match.group("key")}{match.group("prefix")}"{REDACTED}"'


_Replacement = str | Callable[[re.Match[str]], str]

# (pattern, replacement, guard): a pattern runs only when one of its guard strings is in the lower-cased
# text, so a line with nothing secret-shaped costs a few substring checks.
_GUARDED_SHAPES: list[tuple[re.Pattern[str], _Replacement, tuple[str, ...]]] = [
    # Telegram: a bot token in a Bot API path, and a bare token (`<bot id>:<35 characters>`).
    (re.compile(r"(?<![A-Za-z0-9])bot\d{3,}:[A-Za-z0-9_-]{10,}"), f"bot{REDACTED}", ("bot",)),
    (re.compile(r"(?<![A-Za-z0-9:])\d{5,}:[A-Za-z0-9_-]{30,}"), REDACTED, (":",)),
    # Webhook URLs whose path is the secret.
    (
        re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s'\"\\<>?#]+"),
        rf"\1{REDACTED}",
        ("hooks.slack.com",),
    ),
    (re.compile(r"(discord(?:app)?\.com/api/webhooks/\d+/)[A-Za-z0-9_-]+"), rf"\1{REDACTED}", ("discord",)),
    # Headers written out (`Authorization: Bearer …`, `X-Telegram-Bot-Api-Secret-Token: …`, `Cookie: …`).
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9_-])((?:proxy-)?authorization|cookie|set-cookie|x-[A-Za-z0-9-]*?"
            r"(?:token|secret|signature|key|auth))(\s*:\s*)(?:(?:bearer|basic|bot|token|digest)\s+)?" + _VALUE
        ),
        rf"\1\2{REDACTED}",
        ("authorization", "cookie", "x-"),
    ),
    # Secret-named fields of JSON or of a Python repr (`"bot_token": "…"`, `'authorization': '…'`), and
    # header pairs as ASGI and HTTP libraries print them (`(b'x-telegram-bot-api-secret-token', b'…')`).
    (
        re.compile(
            r"(?P<key>(?P<quote>[\"'])(?P<name>[A-Za-z0-9_.-]{1,64})(?P=quote)\s*:\s*|"
            r"\(\s*b?(?P<pquote>[\"'])(?P<pname>[A-Za-z0-9_.-]{1,64})(?P=pquote)\s*,\s*)"
            r"(?P<prefix>b?)(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
        ),
        _redact_quoted_field,
        ('":', "':", '" :', "' :", "',", '",'),
    ),
    # Secret-named parameters: `?token=…`, `&api_key=…`, `password=…` (form bodies, paths, messages).
    (
        re.compile(r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z0-9_.-]{1,64})=" + _VALUE),
        _if_secret_name(rf"\g<name>={REDACTED}"),
        ("=",),
    ),
    # Authorization values in free text.
    (re.compile(r"\b(Bearer|BEARER)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}", ("bearer",)),
    (re.compile(r"\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}", ("bearer",)),
    (
        re.compile(r"\b(Basic)\s+(?=[A-Za-z0-9+/]*[0-9+/=]|[A-Za-z0-9+/]+[A-Z])[A-Za-z0-9+/]{6,}={0,2}"),
        rf"\1 {REDACTED}",
        ("basic",),
    ),
    # Token formats: chatbox's own (the prefix stays, to tell which kind leaked), Slack, Discord, AWS, JWT.
    (re.compile(r"\b(cbk|mcp|inb)_[A-Za-z0-9_-]{32,}"), rf"\1_{REDACTED}", ("cbk_", "mcp_", "inb_")),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"), f"whsec_{REDACTED}", ("whsec_",)),
    (re.compile(r"\b(xox(?:[abposre]|e\.xox[bp])|xapp)-[A-Za-z0-9-]{6,}"), rf"\1-{REDACTED}", ("xox", "xapp-")),
    (re.compile(r"\b[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"), REDACTED, (".",)),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED, ("akia", "asia")),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), REDACTED, ("eyj",)),
]

_SHAPES = [
    (pattern, replacement, re.compile("|".join(map(re.escape, guard))))
    for pattern, replacement, guard in _GUARDED_SHAPES
]

# chatbox's resource ids (`mbx_01J…`): never secrets, so never registered as one.
_RESOURCE_ID = re.compile(r"^[a-z]{2,5}_[0-9A-HJKMNP-TV-Z]{26}$")


def _redact_params(part: str) -> str:
    """Every value of a query string or fragment (`a=1&b=2` -> `a=[REDACTED]&b=[REDACTED]`); a bare
    value (`?abc123`) is replaced whole."""

    def one(match: re.Match[str]) -> str:
        name, eq, value = match.group("name"), match.group("eq"), match.group("value")
        if not eq:
            return REDACTED if name or value else ""
        return f"{name}={REDACTED}" if value else f"{name}="

    return _PARAM.sub(one, part)


def _redact_url(match: re.Match[str]) -> str:
    url = match.group(0)
    parts = _URL_PARTS.match(url)
    if parts is None:  # pragma: no cover - the pattern above matches anything _URL matched
        return url
    authority = parts.group("authority")
    if "@" in authority:
        authority = REDACTED + authority[authority.rindex("@") :]
    query, fragment = parts.group("query"), parts.group("frag")
    redacted = parts.group("scheme") + authority + parts.group("path")
    if query:
        redacted += "?" + _redact_params(query[1:])
    if fragment:
        redacted += "#" + _redact_params(fragment[1:])
    return redacted


def redact_url(url: str) -> str:
    """`url` with its userinfo and every query and fragment value replaced by `[REDACTED]` (for showing a
    webhook URL to an operator: the host and path stay)."""
    return _URL.sub(_redact_url, url)


# --- values -----------------------------------------------------------------------------------------


class SecretRegistry:
    """The secret values this process has held, to redact whatever their shape. Thread-safe, bounded.

    Each value is indexed by its 4-character pieces at offsets 0 to 3, so a text is probed once every 4
    characters (any value of 8+ characters covers a probed piece at one of those offsets): redacting a
    line costs about the same however many values are registered.
    """

    def __init__(self, capacity: int = MAX_REGISTERED_SECRETS) -> None:
        self.capacity = capacity
        self._values: OrderedDict[str, None] = OrderedDict()
        self._index: dict[str, tuple[tuple[int, str], ...]] = {}
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        """Remember `value` (ignored when shorter than MIN_SECRET_LENGTH, blank, or a chatbox resource id)."""
        if not value or len(value) < MIN_SECRET_LENGTH or not value.strip() or _RESOURCE_ID.match(value):
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            index = dict(self._index)  # copy on write: `redact` reads the old one without a lock
            _index_add(index, value)
            while len(self._values) > self.capacity:
                evicted, _ = self._values.popitem(last=False)
                _index_remove(index, evicted)
            self._index = index

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._index = {}

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, text: str) -> str:
        index = self._index
        if not index or len(text) < MIN_SECRET_LENGTH:
            return text
        spans: list[tuple[int, int]] = []
        for probe in range(0, len(text) - _PIECE + 1, _PIECE):
            for offset, value in index.get(text[probe : probe + _PIECE], ()):
                start = probe - offset
                if start >= 0 and text.startswith(value, start):
                    spans.append((start, start + len(value)))
        if not spans:
            return text
        pieces: list[str] = []
        done = 0
        for start, end in sorted(spans):
            if end <= done:
                continue  # inside a span already redacted
            if start >= done:
                pieces += (text[done:start], REDACTED)
            done = end
        pieces.append(text[done:])
        return "".join(pieces)


_PIECE = MIN_SECRET_LENGTH // 2


def _index_add(index: dict[str, tuple[tuple[int, str], ...]], value: str) -> None:
    for offset in range(_PIECE):
        piece = value[offset : offset + _PIECE]
        index[piece] = (*index.get(piece, ()), (offset, value))


def _index_remove(index: dict[str, tuple[tuple[int, str], ...]], value: str) -> None:
    for offset in range(_PIECE):
        piece = value[offset : offset + _PIECE]
        kept = tuple(entry for entry in index.get(piece, ()) if entry[1] != value)
        if kept:
            index[piece] = kept
        else:
            index.pop(piece, None)


SECRETS = SecretRegistry()


def register_secret(value: str | None) -> None:
    """Redact `value` from every log line of this process from now on (see `SecretRegistry.add`)."""
    SECRETS.add(value)


def register_secrets(values: Iterable[str | None]) -> None:
    """`register_secret` for each value (e.g. `Settings.secret_values()`)."""
    for value in values:
        SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret value and every secret-shaped part replaced by `[REDACTED]`.

    Idempotent: redacting a redacted text changes nothing.
    """
    text = SECRETS.redact(text)
    if "://" in text:
        text = _URL.sub(_redact_url, text)
    lowered = text.lower()
    for pattern, replacement, guard in _SHAPES:
        if guard.search(lowered):
            text = pattern.sub(replacement, text)
            lowered = text.lower()
    return text


def redact_value(value: Any) -> Any:
    """A structure with every string redacted (dicts, lists and tuples walked); numbers, booleans and None
    kept; any other object replaced by its redacted `str` when that differs."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(redact_value(item) for item in value)
    return _redacted_object(value)


# --- log records ------------------------------------------------------------------------------------

_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_exception_formatter = logging.Formatter()


class _Redacted:
    """Stands in for a log argument whose `str` or `repr` held a secret: renders the redacted text."""

    __slots__ = ("_repr", "_str")

    def __init__(self, as_str: str, as_repr: str) -> None:
        self._str = as_str
        self._repr = as_repr

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr

    def __format__(self, spec: str) -> str:
        return format(self._str, spec)


def _redacted_object(value: object) -> object:
    try:
        as_str, as_repr = str(value), repr(value)
    except Exception:  # noqa: BLE001 - an argument that cannot render is logging's error to report, not ours
        return value
    clean_str, clean_repr = redact(as_str), redact(as_repr)
    if clean_str == as_str and clean_repr == as_repr:
        return value
    return _Redacted(clean_str, clean_repr)


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _redacted_object(value)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record in place: its message and args, its exception and stack text, and its string `extra`
    fields. Args keep their shape (formatters such as uvicorn's read them one by one) unless a secret only
    appears once they are put together; then the message is rendered and the args dropped.

    Idempotent, and cheap on a record with nothing to hide (one pass over its message), so the record
    factory and each handler's filter may all run it. The record carries no mark of it: JSON formatters
    print a record's extra attributes.
    """
    _redact_message(record)
    # `extra` fields are set after the record factory ran: a handler's filter or formatter sees them.
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRIBUTES and isinstance(value, str | Mapping | list):
            setattr(record, name, redact_value(value))
    return record


def _redact_message(record: logging.LogRecord) -> None:
    if not isinstance(record.msg, str):
        structured = isinstance(record.msg, Mapping) or type(record.msg) in (list, tuple)
        record.msg = redact_value(record.msg) if structured else _redacted_object(record.msg)
    rendered = _rendered(record)
    if rendered is None or redact(rendered) != rendered or isinstance(record.args, Mapping):
        # Something to hide (or no way to tell): redact the parts, keeping their shape. A message with args
        # is a format string: redacted alone, its placeholders could go (`https://%s@host`); it is only
        # replaced, rendered, below.
        if isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: _redact_arg(item) for key, item in record.args.items()}
        elif record.args:
            record.args = tuple(_redact_arg(item) for item in record.args)
        rendered = _rendered(record)
        if rendered is not None and redact(rendered) != rendered:
            record.msg, record.args = redact(rendered), ()
    # Rendered now, so every formatter that uses `exc_text` (the standard one does) prints it redacted.
    if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = _exception_formatter.formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _rendered(record: logging.LogRecord) -> str | None:
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a format/args mismatch is the handler's to report, as always
        return None


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record passing through (see `redact_record`); it never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


class RedactingFormatter(logging.Formatter):
    """A `logging.Formatter` whose output, exception text included, is redacted: the last net before a line
    leaves the process."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's naming
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging's naming
        return redact(super().formatStack(stack_info))


class _RedactingRecordFactory:
    """Wraps the process's log record factory so every record is redacted as it is made."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(self.wrapped(*args, **kwargs))


def install_log_redaction(loggers: Iterable[str] = ()) -> None:
    """Redact every log record of this process from now on. Idempotent; every composition root calls it.

    Wraps the log record factory (records are redacted as they are made, whichever handler gets them) and
    puts a `RedactingFilter` on the handlers of the root logger and of `loggers` (records not made by the
    factory: `logging.makeLogRecord`, records from other processes).
    """
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(_RedactingRecordFactory(factory))
    for name in ("", *loggers):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
                handler.addFilter(RedactingFilter())


def uninstall_log_redaction() -> None:
    """Undo `install_log_redaction` for the factory and the root logger's handlers (tests)."""
    factory = logging.getLogRecordFactory()
    if isinstance(factory, _RedactingRecordFactory):
        logging.setLogRecordFactory(factory.wrapped)
    for handler in logging.getLogger().handlers:
        for existing in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(existing)
