"""One deployment at a glance, across every account: what `chatbox status` prints."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatbox.domain.schemas import DeliveryStatus, MailboxStatus
from chatbox.services.mailboxes import delivery_counts
from chatbox.store.models import Account, Connection, Mailbox


@dataclass(frozen=True)
class DeploymentStatus:
    """Counts from the core's records. `queue_depth` is what still waits to be delivered (pending and held)."""

    accounts: int
    mailboxes: dict[str, int]
    connections: dict[str, int]  # active connections by platform
    queue_depth: int
    dead_letters: int
    paused_mailboxes: list[str]


def deployment_status(db: Session) -> DeploymentStatus:
    mailbox_counts = dict.fromkeys((status.value for status in MailboxStatus), 0)
    mailbox_counts.update(
        {status: int(n) for status, n in db.execute(select(Mailbox.status, func.count()).group_by(Mailbox.status))}
    )
    by_platform = db.execute(
        select(Connection.platform, func.count())
        .where(Connection.status == "active")
        .group_by(Connection.platform)
        .order_by(Connection.platform)
    )
    deliveries = delivery_counts(db)
    paused = db.scalars(select(Mailbox.id).where(Mailbox.status == MailboxStatus.paused.value).order_by(Mailbox.id))
    return DeploymentStatus(
        accounts=db.scalar(select(func.count()).select_from(Account)) or 0,
        mailboxes=mailbox_counts,
        connections={platform: int(n) for platform, n in by_platform},
        queue_depth=deliveries[DeliveryStatus.pending.value] + deliveries[DeliveryStatus.held.value],
        dead_letters=deliveries[DeliveryStatus.dead.value],
        paused_mailboxes=list(paused),
    )
