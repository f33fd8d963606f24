"""Accounts (tenants) and their API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbox.domain.errors import AuthenticationError, InvalidInputError, NotFoundError
from chatbox.domain.ids import hash_token, new_id, new_token, token_matches
from chatbox.store.models import Account, ApiKey
from chatbox.store.types import utcnow

MIN_CHOSEN_KEY_LENGTH = 32


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
    if db.get(Account, account_id) is None:
        raise NotFoundError("account not found: unknown id")
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


def revoke_api_key(db: Session, key_id: str) -> None:
    key = db.get(ApiKey, key_id)
    if key is None:
        raise NotFoundError("API key not found: unknown id")
    key.revoked_at = key.revoked_at or utcnow()
    db.commit()


def authenticate_api_key(db: Session, presented: str) -> str:
    """The account id the key belongs to. Raises AuthenticationError for unknown or revoked keys."""
    key = db.scalar(select(ApiKey).where(ApiKey.key_hash == hash_token(presented)))
    if key is None or not token_matches(presented, key.key_hash) or key.revoked_at is not None:
        raise AuthenticationError("invalid or revoked API key")
    return key.account_id


def account_count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Account)) or 0


def bootstrap(db: Session, *, api_key: str | None = None, name: str = "default") -> IssuedKey | None:
    """Create the first account and key, or None when an account already exists."""
    if account_count(db) > 0:
        return None
    return create_account(db, name, api_key=api_key)
