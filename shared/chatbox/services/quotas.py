"""Account quotas: how many mailboxes and credentials one tenant may hold (`CHATBOX_MAX_*_PER_ACCOUNT`).

Checked where a tenant creates them; going over answers `QuotaExceededError` (409 `quota_exceeded`),
whose message names the setting. Archived mailboxes do not count (they keep their history but no longer
act); every credential counts, the secrets a connection stores for its platform included, until deleted.
The check locks the account's row on Postgres, so concurrent creates of one account cannot both take the
last slot (SQLite has one writer anyway).

Example:
    ```python
    require_mailbox_room(db, account_id, AccountLimits(max_mailboxes=100, max_credentials=500))
    ```
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbox.domain.errors import QuotaExceededError
from chatbox.domain.schemas import MailboxStatus
from chatbox.domain.settings import Settings
from chatbox.store.models import Account, Credential, Mailbox

DEFAULT_MAX_MAILBOXES: int = Settings.model_fields["max_mailboxes_per_account"].default
DEFAULT_MAX_CREDENTIALS: int = Settings.model_fields["max_credentials_per_account"].default


@dataclass(frozen=True)
class AccountLimits:
    """The quotas of every account in this deployment (the defaults are the settings' defaults)."""

    max_mailboxes: int = DEFAULT_MAX_MAILBOXES
    max_credentials: int = DEFAULT_MAX_CREDENTIALS

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountLimits:
        return cls(settings.max_mailboxes_per_account, settings.max_credentials_per_account)


DEFAULT_LIMITS = AccountLimits()


def lock_account(db: Session, account_id: str) -> None:
    """Hold the account's row until the transaction ends (Postgres; SQLAlchemy renders nothing on SQLite)."""
    db.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def require_mailbox_room(db: Session, account_id: str, limits: AccountLimits) -> None:
    """QuotaExceededError when the account already has `limits.max_mailboxes` mailboxes that are not archived."""
    lock_account(db, account_id)
    live = db.scalar(
        select(func.count())
        .select_from(Mailbox)
        .where(Mailbox.account_id == account_id, Mailbox.status != MailboxStatus.archived.value)
    )
    if (live or 0) >= limits.max_mailboxes:
        raise QuotaExceededError(
            f"account {account_id} already has {live} mailboxes, the most this deployment allows "
            f"(CHATBOX_MAX_MAILBOXES_PER_ACCOUNT={limits.max_mailboxes}); archive one first"
        )


def require_credential_room(db: Session, account_id: str, adding: int, limits: AccountLimits) -> None:
    """QuotaExceededError when `adding` more credentials would take the account over `limits.max_credentials`."""
    if adding <= 0:
        return
    lock_account(db, account_id)
    held = db.scalar(select(func.count()).select_from(Credential).where(Credential.account_id == account_id)) or 0
    if held + adding > limits.max_credentials:
        raise QuotaExceededError(
            f"account {account_id} holds {held} credentials and this needs {adding} more, over the most this "
            f"deployment allows (CHATBOX_MAX_CREDENTIALS_PER_ACCOUNT={limits.max_credentials}); delete unused "
            "ones first (an archived connection's platform secrets can go)"
        )
