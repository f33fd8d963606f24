"""Pick the queue adapter named by CHATBOX_QUEUE. The SQS adapter (and boto3) load only when chosen."""

from __future__ import annotations

from chatbox.queues import DeliveryQueue
from chatbox.queues.local import LocalQueue
from chatbox.settings import Settings
from chatbox.store.database import Database


def build_queue(settings: Settings, db: Database) -> DeliveryQueue:
    if settings.queue == "sqs":
        from chatbox.queues.sqs import SqsQueue

        return SqsQueue.from_settings(settings)
    return LocalQueue(
        db,
        visibility_timeout=settings.local_queue_visibility_seconds,
        max_receives=settings.delivery_max_attempts + 4,  # a backstop behind the core's own crash check
        wake_path=settings.home / "queue.wake",
    )
