"""Mailboxes: where an agent's inbound is delivered (webhook) and from where it acts (MCP)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbox.domain.addresses import AddressPolicy, check_url
from chatbox.domain.errors import ConflictError, InvalidInputError, NotFoundError
from chatbox.domain.ids import hash_token, is_valid_id, new_id, new_token
from chatbox.domain.rendering import validate_templates
from chatbox.domain.schemas import (
    CredentialKind,
    DeliveryStatus,
    EventType,
    MailboxCreate,
    MailboxHealth,
    MailboxStatus,
    MailboxUpdate,
)
from chatbox.ports.queue import DeliveryQueue
from chatbox.services.credentials import get_credential
from chatbox.services.delivery_requeue import redrive_dead_letters, release_held
from chatbox.services.events import record_event
from chatbox.services.pagination import paginate
from chatbox.services.quotas import DEFAULT_LIMITS, AccountLimits, require_mailbox_room
from chatbox.store.database import release_before_network_call
from chatbox.store.models import Delivery, Mailbox

# Never the id itself: it came from a path or an argument, and rejected input is not repeated.
MAILBOX_NOT_FOUND = "mailbox not found: unknown id"


@dataclass(frozen=True)
class CreatedMailbox:
    mailbox: Mailbox
    mcp_token: str


def _check_credential_ref(
    db: Session, account_id: str, credential_id: str | None, kind: CredentialKind, field: str
) -> None:
    if credential_id is None:
        return
    try:
        credential = get_credential(db, account_id, credential_id)
    except NotFoundError as exc:
        raise InvalidInputError(f"{field}: credential not found: unknown id") from exc
    if credential.kind != kind.value:
        raise InvalidInputError(
            f"{field}: credential {credential.id} is of kind {credential.kind}, expected {kind.value}"
        )


def _check_webhook_url(db: Session, url: str | None, policy: AddressPolicy) -> None:
    """TargetRefusedError (422) for a target the policy refuses. It may resolve the host name, so it runs
    before anything is written and holds no transaction open across the lookup."""
    if url is not None:
        release_before_network_call(db)
        check_url(url, policy, field="webhook_url")


def create_mailbox(
    db: Session,
    account_id: str,
    data: MailboxCreate,
    *,
    policy: AddressPolicy,
    limits: AccountLimits = DEFAULT_LIMITS,
) -> CreatedMailbox:
    """Create a mailbox and its MCP token (returned once; only the hash is kept).

    Raises:
        InvalidInputError: a forbidden webhook target, an unusable template or credential.
        QuotaExceededError: the account has `limits.max_mailboxes` live mailboxes already.
    """
    _check_webhook_url(db, data.webhook_url, policy)
    validate_templates(data.templates)
    _check_credential_ref(
        db, account_id, data.signing_credential_id, CredentialKind.hmac_signing, "signing_credential_id"
    )
    _check_credential_ref(
        db, account_id, data.webhook_auth_credential_id, CredentialKind.webhook_auth, "webhook_auth_credential_id"
    )
    require_mailbox_room(db, account_id, limits)
    token = new_token("mcp")
    mailbox = Mailbox(
        id=new_id("mailbox"),
        account_id=account_id,
        name=data.name,
        webhook_url=data.webhook_url,
        templates=dict(data.templates),
        recap_messages=data.recap_messages,
        signing_credential_id=data.signing_credential_id,
        webhook_auth_credential_id=data.webhook_auth_credential_id,
        mcp_token_hash=hash_token(token),
        status=MailboxStatus.active.value,
    )
    db.add(mailbox)
    db.commit()
    return CreatedMailbox(mailbox, token)


def get_mailbox_any_account(db: Session, mailbox_id: str) -> Mailbox:
    """A mailbox by id whatever its account: for callers already scoped to it (an MCP token, an operator).

    Raises:
        NotFoundError: no mailbox has this id (or it is not a mailbox id at all).
    """
    mailbox = db.get(Mailbox, mailbox_id) if is_valid_id("mailbox", mailbox_id) else None
    if mailbox is None:
        raise NotFoundError(MAILBOX_NOT_FOUND)
    return mailbox


def get_mailbox(db: Session, account_id: str, mailbox_id: str) -> Mailbox:
    """The account's mailbox; another account's id is reported exactly like an unknown one (NotFoundError)."""
    mailbox = get_mailbox_any_account(db, mailbox_id)
    if mailbox.account_id != account_id:
        raise NotFoundError(MAILBOX_NOT_FOUND)
    return mailbox


def require_live_mailbox(mailbox: Mailbox) -> None:
    """ConflictError when the mailbox is archived: it keeps its history but no longer acts (no focus changes,
    sends or updates)."""
    if mailbox.status == MailboxStatus.archived.value:
        raise ConflictError(f"mailbox {mailbox.id} is archived; it keeps its history but can no longer act")


def list_mailboxes(
    db: Session, account_id: str | None, *, limit: int, cursor: str | None, include_archived: bool = False
) -> tuple[list[Mailbox], str | None]:
    """One page of mailboxes: the account's, or every account's when `account_id` is None (operators)."""
    stmt = select(Mailbox)
    if account_id is not None:
        stmt = stmt.where(Mailbox.account_id == account_id)
    if not include_archived:
        stmt = stmt.where(Mailbox.status != MailboxStatus.archived.value)
    return paginate(db, stmt, Mailbox.id, kind="mailbox", limit=limit, cursor=cursor)


def update_mailbox(
    db: Session, queue: DeliveryQueue, account_id: str, mailbox_id: str, data: MailboxUpdate, *, policy: AddressPolicy
) -> Mailbox:
    """Change only the fields present. Setting a webhook_url sends what was held for the lack of one."""
    fields = data.model_fields_set
    if "webhook_url" in fields:
        _check_webhook_url(db, data.webhook_url, policy)
    mailbox = get_mailbox(db, account_id, mailbox_id)
    require_live_mailbox(mailbox)
    if "name" in fields:
        if data.name is None:
            raise InvalidInputError("name cannot be null")
        mailbox.name = data.name
    if "webhook_url" in fields:
        mailbox.webhook_url = data.webhook_url
    if "signing_credential_id" in fields:
        _check_credential_ref(
            db, account_id, data.signing_credential_id, CredentialKind.hmac_signing, "signing_credential_id"
        )
        mailbox.signing_credential_id = data.signing_credential_id
    if "webhook_auth_credential_id" in fields:
        _check_credential_ref(
            db, account_id, data.webhook_auth_credential_id, CredentialKind.webhook_auth, "webhook_auth_credential_id"
        )
        mailbox.webhook_auth_credential_id = data.webhook_auth_credential_id
    if "recap_messages" in fields:
        mailbox.recap_messages = data.recap_messages
    if "templates" in fields:
        validate_templates(data.templates or {})
        mailbox.templates = dict(data.templates or {})
    db.commit()
    if mailbox.webhook_url and mailbox.status == MailboxStatus.active.value:
        release_held(db, queue, mailbox.id)
    return mailbox


def archive_mailbox(db: Session, account_id: str, mailbox_id: str) -> Mailbox:
    """Archive a mailbox: it keeps its history but accepts and delivers nothing more. Idempotent."""
    mailbox = get_mailbox(db, account_id, mailbox_id)
    mailbox.status = MailboxStatus.archived.value
    db.commit()
    return mailbox


def regenerate_mcp_token(db: Session, mailbox_id: str) -> str:
    """Replace a mailbox's MCP token (the old one stops working at once); the new one is returned once."""
    mailbox = get_mailbox_any_account(db, mailbox_id)
    token = new_token("mcp")
    mailbox.mcp_token_hash = hash_token(token)
    db.commit()
    return token


def unpause_mailbox(db: Session, queue: DeliveryQueue, account_id: str, mailbox_id: str) -> Mailbox:
    """Resume deliveries: the failure streak resets and held deliveries are sent, each chat in order."""
    mailbox = get_mailbox(db, account_id, mailbox_id)
    require_live_mailbox(mailbox)
    if mailbox.status == MailboxStatus.paused.value:
        record_event(db, mailbox.account_id, EventType.mailbox_unpaused, mailbox_id=mailbox.id)
    mailbox.status = MailboxStatus.active.value
    mailbox.consecutive_failures = 0
    db.commit()
    release_held(db, queue, mailbox.id)
    return mailbox


def redrive_mailbox(db: Session, queue: DeliveryQueue, account_id: str, mailbox_id: str) -> int:
    """Re-queue the mailbox's dead letters with a fresh set of attempts. Returns how many."""
    mailbox = get_mailbox(db, account_id, mailbox_id)
    require_live_mailbox(mailbox)
    return redrive_dead_letters(db, queue, mailbox.id)


def mailbox_health(db: Session, account_id: str, mailbox_id: str) -> MailboxHealth:
    """Delivery counts and the latest outcome, from the core's record of deliveries."""
    mailbox = get_mailbox(db, account_id, mailbox_id)
    counts = dict(
        db.execute(
            select(Delivery.status, func.count()).where(Delivery.mailbox_id == mailbox.id).group_by(Delivery.status)
        ).all()
    )
    return MailboxHealth(
        status=MailboxStatus(mailbox.status),
        consecutive_failures=mailbox.consecutive_failures,
        delivered=counts.get(DeliveryStatus.delivered.value, 0),
        pending=counts.get(DeliveryStatus.pending.value, 0) + counts.get(DeliveryStatus.held.value, 0),
        dead_letters=counts.get(DeliveryStatus.dead.value, 0),
        last_success_at=mailbox.last_success_at,
        last_error=mailbox.last_error,
        last_error_at=mailbox.last_error_at,
    )


def delivery_counts(db: Session) -> dict[str, int]:
    """Deliveries by status across all mailboxes (for /metrics): pending and held are the queue depth."""
    rows = db.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    counts = dict.fromkeys((status.value for status in DeliveryStatus), 0)
    counts.update({status: int(count) for status, count in rows})
    return counts


def paused_mailbox_count(db: Session) -> int:
    """Mailboxes paused, by an operator or by auto-pause (for /metrics)."""
    return int(
        db.scalar(select(func.count()).select_from(Mailbox).where(Mailbox.status == MailboxStatus.paused.value)) or 0
    )


def recent_deliveries(db: Session, mailbox_id: str, *, limit: int = 20, after: str | None = None) -> list[Delivery]:
    """The mailbox's newest deliveries (oldest first), or those created after the id `after`."""
    stmt = select(Delivery).where(Delivery.mailbox_id == mailbox_id)
    if after is not None:
        return list(db.scalars(stmt.where(Delivery.id > after).order_by(Delivery.id).limit(limit)))
    newest = list(db.scalars(stmt.order_by(Delivery.id.desc()).limit(limit)))
    return newest[::-1]
