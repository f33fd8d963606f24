"""Domain errors. Entry points map these types (never their text) to HTTP codes, tool errors, batch failures."""

from __future__ import annotations


class ChatboxError(Exception):
    """Base of every error the core raises on purpose. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(ChatboxError):
    code = "not_found"


class ConflictError(ChatboxError):
    code = "conflict"


class InvalidInputError(ChatboxError):
    code = "invalid_input"


class AuthenticationError(ChatboxError):
    code = "unauthorized"


class VaultError(ChatboxError):
    """A secret could not be sealed or opened: missing key, wrong key, or tampered ciphertext."""

    code = "vault_error"
