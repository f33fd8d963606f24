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


class QuotaExceededError(ConflictError):
    """The account already holds as many of something as the deployment allows (a `CHATBOX_MAX_*` setting);
    archiving or deleting one makes room."""

    code = "quota_exceeded"


class InvalidInputError(ChatboxError):
    code = "invalid_input"


class TargetRefusedError(InvalidInputError):
    """A URL a tenant set leads where this deployment does not connect (chatbox.domain.addresses: SSRF protection).

    An InvalidInputError (422) when a URL is configured; at send time the adapters report it as a failed
    delivery attempt or a ConnectorUnavailableError, never having connected.
    """


class AuthenticationError(ChatboxError):
    code = "unauthorized"


class ForbiddenError(ChatboxError):
    """The caller is authenticated, but not for what it addressed (another account's id)."""

    code = "forbidden"


class ThrottledError(ChatboxError):
    """Too many failed authentication attempts from this client: refused unchecked for `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class VaultError(ChatboxError):
    """A secret could not be sealed or opened: missing key, wrong key, or tampered ciphertext."""

    code = "vault_error"


class NoFocusError(ChatboxError):
    """An action needed the focal chat and the mailbox has none."""

    code = "no_focus"


class ConnectorError(ChatboxError):
    """Base of the errors a platform connector reports for a send (see chatbox.ports.connector).

    A long text goes out in parts, in order: `parts_sent` are the platform ids of the leading parts that went
    out before this error (empty when none did), `parts_total` how many parts the text has (0 when unknown).
    """

    code = "connector_error"
    parts_sent: tuple[str, ...] = ()
    parts_total: int = 0


class ConnectorUnavailableError(ConnectorError):
    """No connector for the platform, or it cannot be reached (down, timeout, misconfigured); retry later."""

    code = "connector_unavailable"


class PlatformRefusedError(ConnectorError):
    """The platform refused the message (unknown chat, blocked, too long, ...); retrying the same call won't help."""

    code = "platform_refused"


class RateLimitedError(ConnectorError):
    """The platform asks to slow down; `retry_after` is the wait in seconds when it said so."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownOutcomeError(ConnectorError):
    """The request reached the platform (or may have) and no answer came back: a timeout or a reset after it left.

    Neither success nor failure: sending the same again may post it twice. The connector already tried to find
    out (`parts_sent` holds what it could confirm); an idempotent retry with the same key asks again.
    """

    code = "unknown_outcome"
