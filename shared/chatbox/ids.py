"""Resource ids and bearer tokens.

Ids are a type prefix plus a ULID-style body (48-bit milliseconds + 80 random bits in Crockford
base32), so they sort by creation time and serve directly as pagination cursors.
Tokens are random and only their SHA-256 is stored; a high-entropy secret needs no slow hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
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
}


def new_id(kind: str) -> str:
    """A fresh, time-ordered id such as `mbx_01JD3…`."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    body = "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
    return f"{PREFIXES[kind]}_{body}"


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
