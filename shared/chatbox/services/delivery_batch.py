"""A batch of queue records in, the records to keep out: the batch semantics both queues share.

`deliver_batch` is what both queue adapters drive: the delivery Lambda hands it an SQS FIFO batch,
the local consumer hands it each chat's run of records from the local queue. It returns the message
ids of the records that stay in the queue (SQS's `batchItemFailures`); the caller removes the rest
(Lambda does that itself for SQS).

A record that stays gets its visibility set here, to the delay the core decided, because nothing
else would: with FIFO and `ReportBatchItemFailures` Lambda leaves a reported record hidden for the
queue's whole visibility timeout (1080 s on AWS), and so does the local queue. So:

- a failed attempt stays for the retry backoff (`Deliverer` decides it from the attempts recorded);
- an unexpected error (database down, a bug) stays for a short, bounded delay that grows with the
  record's receive count;
- the later records of the same group (chat) in the batch are not attempted: a chat's messages go
  out in order. They stay too, hidden for the same delay as the record ahead of them, so they come
  back with it, not a visibility timeout later; and the receive is noted as a deferral, so waiting
  behind a failing message never counts against a delivery's own crash guard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from chatbox.ports.queue import DeliveryQueue, QueueRecord
from chatbox.services.delivery_attempt import CRASH_ALLOWANCE, Deliverer, DeliveryPolicy, Outcome, backoff_seconds

log = logging.getLogger(__name__)

__all__ = ["CRASH_ALLOWANCE", "CRASH_RETRY_MAX_SECONDS", "crash_retry_seconds", "deliver_batch"]
# The longest an unexpected error keeps a record (and its chat) waiting before the next try.
CRASH_RETRY_MAX_SECONDS = 300.0


def deliver_batch(
    records: Sequence[QueueRecord],
    deliverer: Deliverer,
    queue: DeliveryQueue,
    *,
    on_record: Callable[[QueueRecord], object] | None = None,
) -> list[str]:
    """Deliver a batch in order; return the message ids of the records that stay in the queue.

    Every record that stays has already been made visible again after its delay. Records not
    returned were delivered, held, dead-lettered or found to need nothing: remove them.

    Args:
        records: as received, in queue order (records of one group in the order sent).
        on_record: called as each record is taken up (the Lambda entry sets its log correlation id).
    """
    failed: list[str] = []
    deferred: list[str] = []
    delay_of_group: dict[str, float] = {}  # groups with a record that stays, and that record's delay
    for record in records:
        delay = delay_of_group.get(record.group_id)
        if delay is None:
            if on_record is not None:
                on_record(record)
            delay = _deliver_record(record, deliverer, queue)
            if delay is None:
                continue
            delay_of_group[record.group_id] = delay
        elif (delivery_id := record.delivery_id()) is not None:
            deferred.append(delivery_id)
        _retry_later(queue, record, delay)
        failed.append(record.message_id)
    _note_deferred(deliverer, deferred)
    return failed


def _note_deferred(deliverer: Deliverer, delivery_ids: list[str]) -> None:
    try:
        deliverer.note_deferred(delivery_ids)
    except Exception:  # noqa: BLE001 - the records stay either way; only the crash guard loses the count
        log.warning("could not note %d deferred deliveries", len(delivery_ids), exc_info=True)


def _deliver_record(record: QueueRecord, deliverer: Deliverer, queue: DeliveryQueue) -> float | None:
    """Handle one record: None when it may leave the queue, else the seconds until it is tried again."""
    try:
        return _settle(record, deliverer, queue)
    except Exception:  # noqa: BLE001 - the record stays (reported failed) and comes back soon
        delay = crash_retry_seconds(record.receive_count, deliverer.policy)
        log.exception("delivery of queue record %s crashed; it stays, back in %.1fs", record.message_id, delay)
        return delay


def _settle(record: QueueRecord, deliverer: Deliverer, queue: DeliveryQueue) -> float | None:
    delivery_id = record.delivery_id()
    if delivery_id is None:
        log.error("queue record %s carries no delivery id; dead-lettering it", record.message_id)
        queue.dead_letter(record)
        return None
    decision = deliverer.deliver(delivery_id, record.receive_count)
    if decision.outcome is Outcome.RETRY:
        return decision.delay
    if decision.outcome is Outcome.DEAD:
        queue.dead_letter(record)
    return None


def crash_retry_seconds(receive_count: int, policy: DeliveryPolicy) -> float:
    """The wait after an unexpected error: the retry backoff for the receive count, at most 5 minutes.

    Not the queue's visibility timeout (18 minutes on AWS): a database blip should cost seconds. It
    still grows, so a record that keeps crashing does not spin; `CRASH_ALLOWANCE` ends it.
    """
    return min(backoff_seconds(max(receive_count, 1), policy.retry_base_seconds), CRASH_RETRY_MAX_SECONDS)


def _retry_later(queue: DeliveryQueue, record: QueueRecord, delay: float) -> None:
    try:
        queue.retry_later(record, delay)
    except Exception:  # noqa: BLE001 - still reported failed; it comes back after the visibility timeout instead
        log.warning(
            "could not delay queue record %s; it returns after the queue's visibility timeout",
            record.message_id,
            exc_info=True,
        )
