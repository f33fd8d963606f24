"""/v1/event-subscriptions: where an account's service events (new_chat, delivery_failed, ...) are POSTed."""

from __future__ import annotations

from fastapi import Response

from chatbox.domain.schemas import EventSubscriptionCreate, EventSubscriptionPublic, Page
from chatbox.services import events
from chatbox.web.declared_routes import declared_router
from chatbox.web.deps import DEFAULT_PAGE, CurrentAccount, Cursor, Limit, RuntimeDep, SessionDep
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses
from chatbox.web.presenters import event_subscription_public

router = declared_router(prefix="/v1/event-subscriptions", tags=["events"], responses=THROTTLED_RESPONSES)


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to the account's service events",
    responses=error_responses(
        400,
        401,
        409,
        413,
        422,
        s409="`quota_exceeded`: the account has 20 event subscriptions",
        s422="A malformed body, an unknown event type, a URL the address policy refuses, or a signing credential "
        "that is unknown or not hmac_signing",
    ),
)
def create_subscription(
    body: EventSubscriptionCreate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> EventSubscriptionPublic:
    created = events.create_subscription(db, account, body, policy=runtime.address_policy)
    return event_subscription_public(created)


@router.get("", summary="List the account's event subscriptions", responses=error_responses(401, 422))
def list_subscriptions(
    db: SessionDep, account: CurrentAccount, limit: Limit = DEFAULT_PAGE, cursor: Cursor = None
) -> Page[EventSubscriptionPublic]:
    rows, next_cursor = events.list_subscriptions(db, account, limit=limit, cursor=cursor)
    return Page(items=[event_subscription_public(s) for s in rows], next_cursor=next_cursor)


@router.get("/{subscription_id}", summary="Read an event subscription", responses=error_responses(401, 404))
def get_subscription(subscription_id: str, db: SessionDep, account: CurrentAccount) -> EventSubscriptionPublic:
    return event_subscription_public(events.get_subscription(db, account, subscription_id))


@router.put(
    "/{subscription_id}",
    summary="Replace an event subscription's URL, event types and signing credential",
    responses=error_responses(400, 401, 404, 413, 422),
)
def replace_subscription(
    subscription_id: str, body: EventSubscriptionCreate, db: SessionDep, account: CurrentAccount, runtime: RuntimeDep
) -> EventSubscriptionPublic:
    replaced = events.replace_subscription(db, account, subscription_id, body, policy=runtime.address_policy)
    return event_subscription_public(replaced)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    summary="Delete an event subscription (its undelivered events are dropped)",
    responses=error_responses(401, 404),
)
def delete_subscription(subscription_id: str, db: SessionDep, account: CurrentAccount) -> Response:
    events.delete_subscription(db, account, subscription_id)
    return Response(status_code=204)
