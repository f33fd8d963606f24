"""Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from chatbox.domain.errors import InvalidInputError

SECRET_PREFIX = "whsec_"


def decode_signing_secret(secret: str) -> bytes:
    """The raw key of a `whsec_`-prefixed base64 secret (24 to 64 bytes). InvalidInputError otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInputError("an hmac_signing secret must look like whsec_<base64 of 24-64 random bytes>")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("the hmac_signing secret after whsec_ is not valid base64") from exc
    if not 24 <= len(key) <= 64:
        raise InvalidInputError(f"the hmac_signing secret must decode to 24-64 bytes, not {len(key)}")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one body."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
