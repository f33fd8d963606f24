"""Secrets at rest: AES-256-GCM with a random 96-bit nonce, bound to their credential and account.

Each ciphertext records the id of the key that sealed it, so keys rotate: the current key
(`CHATBOX_VAULT_KEY`) seals, old keys (`CHATBOX_VAULT_OLD_KEYS`) still open, and
`chatbox vault rotate` re-seals everything under the current key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from chatbox.domain.errors import VaultError
from chatbox.domain.redaction import register_secret

_NONCE_BYTES = 12


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


def generate_key() -> str:
    """A new vault key: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def key_id_of(key: bytes) -> str:
    """A short, non-secret fingerprint that names a key."""
    return hashlib.sha256(b"chatbox-vault-key-id" + key).hexdigest()[:16]


def decode_key(encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VaultError("vault key is not valid base64") from exc
    if len(key) != 32:
        raise VaultError(f"vault key must be 32 bytes, got {len(key)}")
    return key


def _associated_data(credential_id: str, account_id: str) -> bytes:
    # Length-prefixed, so no pair of ids can run together into another pair's bytes.
    return f"chatbox:credential:{len(credential_id)}:{credential_id}:{len(account_id)}:{account_id}".encode()


class Vault:
    """Seals and opens credential values. One instance per process.

    Its keys, and every value it seals or opens, are registered with `chatbox.domain.redaction`: whatever
    their shape, they never appear in this process's log lines.
    """

    def __init__(self, current_key: str, old_keys: list[str] | None = None) -> None:
        if not current_key:
            raise VaultError("no vault key configured: set CHATBOX_VAULT_KEY (base64 of 32 bytes)")
        for encoded in (current_key, *(old_keys or [])):
            register_secret(encoded.strip())
        current = decode_key(current_key)
        self.current_key_id = key_id_of(current)
        self._keys = {self.current_key_id: current}
        for encoded in old_keys or []:
            old = decode_key(encoded)
            self._keys.setdefault(key_id_of(old), old)

    @classmethod
    def from_strings(cls, current_key: str, old_keys: str) -> Vault:
        return cls(current_key, [k for k in old_keys.split(",") if k.strip()])

    # cryptography loads with the first value sealed or opened, not with the vault every process builds at start:
    # most cold starts of the functions (an API request that reads no credential) never use it.
    def seal(self, plaintext: str, *, credential_id: str, account_id: str) -> Sealed:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        register_secret(plaintext)
        nonce = os.urandom(_NONCE_BYTES)
        aead = AESGCM(self._keys[self.current_key_id])
        ciphertext = aead.encrypt(nonce, plaintext.encode(), _associated_data(credential_id, account_id))
        return Sealed(self.current_key_id, nonce, ciphertext)

    def open(self, sealed: Sealed, *, credential_id: str, account_id: str) -> str:
        """The plaintext. Raises VaultError for an unknown key id or a ciphertext that fails authentication."""
        key = self._keys.get(sealed.key_id)
        if key is None:
            raise VaultError(f"credential {credential_id} was sealed with key {sealed.key_id}, which is not configured")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            plaintext = AESGCM(key).decrypt(
                sealed.nonce, sealed.ciphertext, _associated_data(credential_id, account_id)
            )
        except (InvalidTag, ValueError) as exc:  # ValueError: a nonce of an impossible length
            raise VaultError(f"credential {credential_id} failed authentication (tampered or wrong key)") from exc
        opened = plaintext.decode()
        register_secret(opened)
        return opened

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` (e.g. signing attachment links), derived from the current vault key: no second
        secret to configure, and rotating the vault key retires every value signed with it."""
        return hmac.new(self._keys[self.current_key_id], b"chatbox derived key: " + purpose.encode(), "sha256").digest()

    def needs_rotation(self, sealed: Sealed) -> bool:
        return sealed.key_id != self.current_key_id
