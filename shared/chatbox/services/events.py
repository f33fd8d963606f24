"""Service events: what integrators subscribe to (`new_chat`, `delivery_failed`, `mailbox_paused`, ...).

`record_event` writes an event into the events outbox inside the caller's transaction, so an event
exists exactly when what caused it was committed, and costs the caller one insert. Sending it is
`chatbox.services.event_dispatch`'s business, on its own loop and HTTP client, never on the inbound
or message-delivery path.

Example:
    ```python
    record_event(db, account_id, EventType.mailbox_unpaused, mailbox_id=mailbox.id)
    db.commit()
    ```
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from chatbox.domain.addresses import AddressPolicy, check_url
from chatbox.domain.errors import InvalidInputError, NotFoundError, QuotaExceededError
from chatbox.domain.ids import is_valid_id, new_id
from chatbox.domain.schemas import CredentialKind, EventSubscriptionCreate, EventType
from chatbox.services.credentials import get_credential
from chatbox.services.pagination import paginate
from chatbox.store.database import release_before_network_call
from chatbox.store.models import EventDelivery, EventSubscription, ServiceEvent, table_of
from chatbox.store.types import utcnow

MAX_SUBSCRIPTIONS_PER_ACCOUNT = 20
SUBSCRIPTION_NOT_FOUND = "event subscription not found: unknown id"


def record_event(
    db: Session,
    account_id: str,
    event_type: EventType,
    *,
    mailbox_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> str:
    """Add one event to the outbox in the current transaction (the caller commits). Returns its id."""
    event_id = new_id("event")
    db.execute(
        insert(table_of(ServiceEvent)).values(
            id=event_id,
            account_id=account_id,
            mailbox_id=mailbox_id,
            type=event_type.value,
            data=data or {},
            occurred_at=utcnow(),
            fanned_out_at=None,
        )
    )
    return event_id


def _check_subscription(db: Session, account_id: str, data: EventSubscriptionCreate, policy: AddressPolicy) -> None:
    release_before_network_call(db)
    check_url(data.url, policy, field="url")
    if data.signing_credential_id is None:
        return
    try:
        credential = get_credential(db, account_id, data.signing_credential_id)
    except NotFoundError as exc:
        raise InvalidInputError("signing_credential_id: credential not found: unknown id") from exc
    if credential.kind != CredentialKind.hmac_signing.value:
        raise InvalidInputError(
            f"signing_credential_id: credential {credential.id} is of kind {credential.kind}, expected hmac_signing"
        )


def create_subscription(
    db: Session, account_id: str, data: EventSubscriptionCreate, *, policy: AddressPolicy
) -> EventSubscription:
    """Subscribe `data.url` to the account's events of `data.events`.

    Raises:
        InvalidInputError: the address policy refuses the URL (TargetRefusedError), or the signing
            credential is unknown or not an hmac_signing one.
        QuotaExceededError: the account has MAX_SUBSCRIPTIONS_PER_ACCOUNT subscriptions already.
    """
    _check_subscription(db, account_id, data, policy)
    count = db.scalar(
        select(func.count()).select_from(EventSubscription).where(EventSubscription.account_id == account_id)
    )
    if (count or 0) >= MAX_SUBSCRIPTIONS_PER_ACCOUNT:
        raise QuotaExceededError(
            f"the account has {MAX_SUBSCRIPTIONS_PER_ACCOUNT} event subscriptions already; delete one first"
        )
    subscription = EventSubscription(
        id=new_id("event_subscription"),
        account_id=account_id,
        url=data.url,
        events=sorted({e.value for e in data.events}),
        signing_credential_id=data.signing_credential_id,
    )
    db.add(subscription)
    db.commit()
    return subscription


def get_subscription(db: Session, account_id: str, subscription_id: str) -> EventSubscription:
    """The account's subscription; another account's id answers like an unknown one (NotFoundError)."""
    found = db.get(EventSubscription, subscription_id) if is_valid_id("event_subscription", subscription_id) else None
    if found is None or found.account_id != account_id:
        raise NotFoundError(SUBSCRIPTION_NOT_FOUND)
    return found


def list_subscriptions(
    db: Session, account_id: str, *, limit: int, cursor: str | None
) -> tuple[list[EventSubscription], str | None]:
    stmt = select(EventSubscription).where(EventSubscription.account_id == account_id)
    return paginate(db, stmt, EventSubscription.id, kind="event_subscription", limit=limit, cursor=cursor)


def replace_subscription(
    db: Session, account_id: str, subscription_id: str, data: EventSubscriptionCreate, *, policy: AddressPolicy
) -> EventSubscription:
    """Replace a subscription's URL, event types and signing credential. Events already fanned out to it
    go to the new URL on their next attempt."""
    get_subscription(db, account_id, subscription_id)
    _check_subscription(db, account_id, data, policy)
    subscription = get_subscription(db, account_id, subscription_id)
    subscription.url = data.url
    subscription.events = sorted({e.value for e in data.events})
    subscription.signing_credential_id = data.signing_credential_id
    db.commit()
    return subscription


def delete_subscription(db: Session, account_id: str, subscription_id: str) -> None:
    """Delete a subscription and whatever of its events is still undelivered."""
    subscription = get_subscription(db, account_id, subscription_id)
    db.execute(delete(EventDelivery).where(EventDelivery.subscription_id == subscription.id))
    db.delete(subscription)
    db.commit()
