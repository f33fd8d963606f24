"""Resource ids and bearer tokens.

Ids are a type prefix plus a ULID-style body (48-bit milliseconds + 80 random bits in Crockford
base32), so they sort by creation time and serve directly as pagination cursors. Within one
process, ids made in the same millisecond are monotonic (the random part is incremented, as the
ULID spec's monotonic mode does), so a list paged by id is in creation order.
Tokens are random and only their SHA-256 is stored; a high-entropy secret needs no slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two digits per 10 bits: 13 lookups spell an id body instead of 26 (the accept path makes three ids a message).
_DIGIT_PAIRS = tuple(_CROCKFORD[pair >> 5] + _CROCKFORD[pair & 31] for pair in range(1024))
_PAIR_SHIFTS = tuple(range(120, -1, -10))
_ID_BODY = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")

PREFIXES = {
    "account": "acct",
    "api_key": "key",
    "mailbox": "mbx",
    "connection": "conn",
    "chat": "chat",
    "message": "msg",
    "delivery": "dlv",
    "credential": "cred",
    "event_subscription": "esub",
    "event": "evt",
    "event_delivery": "edlv",
    "send": "snd",
}


_RANDOM_BITS = 80
_RANDOM_BYTES = _RANDOM_BITS // 8
# Random parts are read from the OS in blocks: one `os.urandom` per 256 ids instead of one per id (a batched accept
# makes about 80 ids). Ids are names, not secrets (tokens come from `new_token`), and each random part is still
# the operating system's randomness, used once.
_RANDOM_BLOCK = _RANDOM_BYTES * 256
_random_block = b""
_random_at = 0
_last_value = 0
_lock = threading.Lock()


def _forget_random_block() -> None:
    # A forked child must not hand out the random parts its parent has left (two processes, the same ids).
    global _random_block, _random_at
    _random_block, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random_block)


def _random_part() -> int:
    """The next 80 random bits (call with `_lock` held)."""
    global _random_block, _random_at
    if _random_at >= len(_random_block):
        _random_block, _random_at = os.urandom(_RANDOM_BLOCK), 0
    start = _random_at
    _random_at = start + _RANDOM_BYTES
    return int.from_bytes(_random_block[start:_random_at])


def _next_value() -> int:
    global _last_value
    millisecond = (time.time_ns() // 1_000_000) << _RANDOM_BITS
    with _lock:
        candidate = millisecond | _random_part()
        # Same millisecond (or a clock step back): one more than the last, never a smaller id.
        _last_value = candidate if candidate > _last_value else _last_value + 1
        return _last_value


def new_id(kind: str) -> str:
    """A fresh, time-ordered id such as `mbx_01JD3…`; strictly increasing within a process."""
    return f"{PREFIXES[kind]}_{encode_id_body(_next_value())}"


def encode_id_body(value: int) -> str:
    """The 26 Crockford base32 digits of `value`'s low 130 bits, most significant first."""
    pairs = _DIGIT_PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def is_valid_id(kind: str, value: str) -> bool:
    """Whether `value` is well-formed for `kind`; malformed ids are refused before any query."""
    prefix, _, body = value.partition("_")
    return prefix == PREFIXES[kind] and bool(_ID_BODY.match(body))


def new_token(prefix: str) -> str:
    """A bearer token with a readable prefix (`mcp_`, `inb_`, `cbk_`) and 256 bits of entropy."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token against a stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())
