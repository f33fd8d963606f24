"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chatbox.domain.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    QuotaExceededError,
)
from chatbox.domain.ids import hash_token, is_valid_id, new_id, new_token, token_matches
from chatbox.services.pagination import paginate
from chatbox.services.quotas import lock_account
from chatbox.store.models import Account, ApiKey
from chatbox.store.types import utcnow

MIN_CHOSEN_KEY_LENGTH = 32
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_API_KEYS_PER_ACCOUNT = 50


@dataclass(frozen=True)
class IssuedKey:
    """A freshly issued API key. `secret` is shown once and never stored."""

    account_id: str
    key_id: str
    secret: str


def create_account(db: Session, name: str, *, api_key: str | None = None) -> IssuedKey:
    """Create an account with its first API key (a chosen one of >= 32 chars, or a generated one)."""
    account = Account(id=new_id("account"), name=name)
    db.add(account)
    db.flush()
    issued = _add_key(db, account.id, "default", api_key)
    db.commit()
    return issued


def issue_api_key(db: Session, account_id: str, name: str = "default") -> IssuedKey:
    """A new key for the account; its secret is in the answer only.

    Raises:
        NotFoundError: no such account.
        QuotaExceededError: the account has MAX_API_KEYS_PER_ACCOUNT live keys already.
    """
    if db.get(Account, account_id) is None:
        raise NotFoundError("account not found: unknown id")
    lock_account(db, account_id)
    live = db.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    )
    if (live or 0) >= MAX_API_KEYS_PER_ACCOUNT:
        raise QuotaExceededError(
            f"the account has {MAX_API_KEYS_PER_ACCOUNT} live API keys already; revoke unused ones first"
        )
    issued = _add_key(db, account_id, name, None)
    db.commit()
    return issued


def _add_key(db: Session, account_id: str, name: str, chosen: str | None) -> IssuedKey:
    if chosen is not None and len(chosen) < MIN_CHOSEN_KEY_LENGTH:
        raise InvalidInputError(f"a chosen API key must be at least {MIN_CHOSEN_KEY_LENGTH} characters")
    secret = chosen or new_token("cbk")
    key = ApiKey(
        id=new_id("api_key"), account_id=account_id, name=name, prefix=secret[:12], key_hash=hash_token(secret)
    )
    db.add(key)
    db.flush()
    return IssuedKey(account_id=account_id, key_id=key.id, secret=secret)


def revoke_api_key(db: Session, key_id: str, *, account_id: str | None = None) -> ApiKey:
    """Revoke a key at once: its next request answers 401. Idempotent.

    With `account_id` (a tenant revoking its own key) another account's key answers like an unknown one,
    and the account's last live key cannot be revoked (it would lock the account out).

    Raises:
        NotFoundError: no such key (of this account).
        ConflictError: it is the account's last live key.
    """
    key = db.get(ApiKey, key_id) if is_valid_id("api_key", key_id) else None
    if key is None or (account_id is not None and key.account_id != account_id):
        raise NotFoundError("API key not found: unknown id")
    if key.revoked_at is None and account_id is not None:
        lock_account(db, account_id)
        live = db.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
        )
        if (live or 0) <= 1:
            raise ConflictError(
                "this is the account's last API key: create another one (POST /v1/api-keys) before revoking it"
            )
    key.revoked_at = key.revoked_at or utcnow()
    db.commit()
    return key


def list_api_keys(db: Session, account_id: str, *, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
    """The account's live keys (revoked ones are gone for good, so they are not listed)."""
    stmt = select(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
    return paginate(db, stmt, ApiKey.id, kind="api_key", limit=limit, cursor=cursor)


def authenticate_api_key(db: Session, presented: str) -> str:
    """The account id the key belongs to. Raises AuthenticationError for unknown or revoked keys.

    Notes the key's use, at most once per LAST_USED_RESOLUTION, so most requests write nothing."""
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(presented)))
    if key is None or not token_matches(presented, key.key_hash) or key.revoked_at is not None:
        raise AuthenticationError("invalid or revoked API key")
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        db.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        db.commit()
    return key.account_id


def account_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Account)) or 0


def bootstrap(db: Session, *, api_key: str | None = None, name: str = "default") -> IssuedKey | None:
    """Create the first account and key, or None when an account already exists."""
    if account_count(db) > 0:
        return None
    return create_account(db, name, api_key=api_key)


def list_accounts(db: Session, *, limit: int, cursor: str | None) -> tuple[list[Account], str | None]:
    """Every account, oldest first (an operator's view: no tenant sees another)."""
    return paginate(db, select(Account), Account.id, kind="account", limit=limit, cursor=cursor)


def get_account(db: Session, account_id: str) -> Account:
    """Raises NotFoundError for an unknown or malformed id."""
    account = db.get(Account, account_id) if is_valid_id("account", account_id) else None
    if account is None:
        raise NotFoundError("account not found: unknown id")
    return account
