"""Credentials: named secrets sealed by the vault. Values go in, never come back out over the API."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from chatbox.domain.errors import ConflictError, NotFoundError
from chatbox.domain.ids import is_valid_id, new_id
from chatbox.domain.schemas import ConnectionStatus, CredentialCreate, CredentialKind, CredentialUpdate
from chatbox.domain.signing import decode_signing_secret
from chatbox.domain.vault import Sealed, Vault
from chatbox.services.pagination import paginate
from chatbox.services.quotas import DEFAULT_LIMITS, AccountLimits, require_credential_room
from chatbox.store.models import Connection, Credential, EventSubscription, Mailbox


def _check_value(kind: str, value: str) -> None:
    """Refuse values that could never work for their kind, at the door rather than at first use."""
    if kind == CredentialKind.hmac_signing.value:
        decode_signing_secret(value)


def _seal_into(credential: Credential, vault: Vault, value: str) -> None:
    _check_value(credential.kind, value)
    sealed = vault.seal(value, credential_id=credential.id, account_id=credential.account_id)
    credential.key_id, credential.nonce, credential.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext


def add_credential(
    db: Session, vault: Vault, account_id: str, name: str, kind: CredentialKind, value: str
) -> Credential:
    """Seal and stage a credential without committing (callers compose it into their unit of work)."""
    credential = Credential(id=new_id("credential"), account_id=account_id, name=name, kind=kind.value)
    _seal_into(credential, vault, value)
    db.add(credential)
    return credential


def create_credential(
    db: Session,
    vault: Vault,
    account_id: str,
    data: CredentialCreate,
    *,
    limits: AccountLimits = DEFAULT_LIMITS,
) -> Credential:
    """Seal and store a credential. QuotaExceededError when the account holds `limits.max_credentials` already."""
    require_credential_room(db, account_id, 1, limits)
    credential = add_credential(db, vault, account_id, data.name, data.kind, data.value)
    db.commit()
    return credential


def get_credential(db: Session, account_id: str, credential_id: str) -> Credential:
    """The account's credential. Another account's id is reported exactly like an unknown one."""
    credential = db.get(Credential, credential_id) if is_valid_id("credential", credential_id) else None
    if credential is None or credential.account_id != account_id:
        raise NotFoundError("credential not found: unknown id")
    return credential


def list_credentials(
    db: Session, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Credential], str | None]:
    stmt = select(Credential).where(Credential.account_id == account_id)
    return paginate(db, stmt, Credential.id, kind="credential", limit=limit, cursor=cursor)


def update_credential(
    db: Session, vault: Vault, account_id: str, credential_id: str, data: CredentialUpdate
) -> Credential:
    credential = get_credential(db, account_id, credential_id)
    if data.name is not None:
        credential.name = data.name
    if data.value is not None:
        _seal_into(credential, vault, data.value)
    db.commit()
    return credential


def delete_credential(db: Session, account_id: str, credential_id: str) -> None:
    """Delete a credential no mailbox, event subscription or active connection still uses (ConflictError otherwise)."""
    credential = get_credential(db, account_id, credential_id)
    user = db.scalar(
        select(Mailbox.id).where(
            or_(Mailbox.signing_credential_id == credential.id, Mailbox.webhook_auth_credential_id == credential.id)
        )
    )
    if user is not None:
        raise ConflictError(f"credential {credential.id} is used by mailbox {user}; point the mailbox elsewhere first")
    subscriber = db.scalar(select(EventSubscription.id).where(EventSubscription.signing_credential_id == credential.id))
    if subscriber is not None:
        raise ConflictError(
            f"credential {credential.id} signs event subscription {subscriber}; point it elsewhere first"
        )
    # Archived connections are history: their secrets may go (their inbound tokens no longer work).
    live = select(Connection).where(Connection.account_id == account_id, Connection.status == ConnectionStatus.active)
    for connection in db.scalars(live):
        if credential.id in connection.secret_refs.values():
            raise ConflictError(f"credential {credential.id} holds a secret of connection {connection.id}")
    db.delete(credential)
    db.commit()


def reveal(vault: Vault, credential: Credential) -> str:
    """The plaintext, for the core's own use (signing, platform calls). Raises VaultError."""
    sealed = Sealed(credential.key_id, credential.nonce, credential.ciphertext)
    return vault.open(sealed, credential_id=credential.id, account_id=credential.account_id)


def rotate_all(db: Session, vault: Vault, *, batch_size: int = 500) -> int:
    """Re-seal every credential not sealed by the current key. Returns how many were re-sealed."""
    rotated = 0
    while True:
        batch = list(db.scalars(select(Credential).where(Credential.key_id != vault.current_key_id).limit(batch_size)))
        if not batch:
            return rotated
        for credential in batch:
            _seal_into(credential, vault, reveal(vault, credential))
        db.commit()
        rotated += len(batch)
