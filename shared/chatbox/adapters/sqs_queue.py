"""The SQS adapter: a FIFO delivery queue (MessageGroupId = chat) with a dead-letter queue.

Used by the Lambda functions; the delivery function is driven by SQS event records, which
`record_from_lambda` turns into the core's QueueRecord.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatbox.domain.settings import Settings
from chatbox.ports.probe import ProbeResult
from chatbox.ports.queue import DeliveryJob, QueueError, QueueRecord

# SQS refuses a visibility timeout reaching past 12 h after the message's receive. A longer backoff is
# kept in the database (Delivery.next_attempt_at): the record comes back early and is hidden again for
# the rest. The margin covers the time between the receive and this call (the function's timeout, 180 s).
MAX_VISIBILITY_SECONDS = 12 * 3600 - 15 * 60
SEND_BATCH = 10


class SqsQueue:
    def __init__(
        self, client: Any, queue_url: str, dead_letter_queue_url: str, connect: Callable[[], Any] | None = None
    ) -> None:
        """`client`, or None and `connect`, which builds it on the first call to SQS."""
        if not queue_url:
            raise QueueError("CHATBOX_SQS_QUEUE_URL is not set")
        self._client = client
        self._connect = connect
        self._connecting = threading.Lock()
        self.queue_url = queue_url
        self.dead_letter_queue_url = dead_letter_queue_url

    @classmethod
    def from_settings(cls, settings: Settings) -> SqsQueue:
        # The client is built on first use: botocore's import and the SQS service model are the largest share of
        # a cold start's own work, and many invocations never call SQS (most API requests; a delivery batch
        # whose records all succeed, which Lambda deletes itself).
        return cls(None, settings.sqs_queue_url, settings.sqs_dead_letter_queue_url, connect=lambda: _client(settings))

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._connecting:
                if self._client is None:
                    if self._connect is None:
                        raise QueueError("SqsQueue has neither a client nor a way to build one")
                    self._client = self._connect()
        return self._client

    def stage(self, db: object, jobs: Sequence[DeliveryJob]) -> bool:  # noqa: ARG002 - nothing to stage in SQS
        return False

    def send(self, jobs: Sequence[DeliveryJob]) -> None:
        for start in range(0, len(jobs), SEND_BATCH):
            chunk = jobs[start : start + SEND_BATCH]
            entries = [
                {
                    "Id": str(index),
                    "MessageBody": job.body(),
                    "MessageGroupId": job.group_id,
                    "MessageDeduplicationId": job.dedupe_key(),
                }
                for index, job in enumerate(chunk)
            ]
            response = self._call("send_message_batch", QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                reasons = ", ".join(f"{f.get('Code')}: {f.get('Message')}" for f in response["Failed"])
                raise QueueError(f"SQS refused {len(response['Failed'])} message(s): {reasons}")

    def receive(self, max_messages: int = 10, wait_seconds: int = 0) -> list[QueueRecord]:
        response = self._call(
            "receive_message",
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(max_messages, 10)),
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
        )
        return [
            QueueRecord(
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
                body=m["Body"],
                group_id=m.get("Attributes", {}).get("MessageGroupId", ""),
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, record: QueueRecord) -> None:
        self._call("delete_message", QueueUrl=self.queue_url, ReceiptHandle=record.receipt)

    def retry_later(self, record: QueueRecord, delay_seconds: float) -> None:
        # Whole seconds, rounded up: never visible again before the delay the core decided.
        seconds = math.ceil(min(max(delay_seconds, 0), MAX_VISIBILITY_SECONDS))
        self._call(
            "change_message_visibility",
            QueueUrl=self.queue_url,
            ReceiptHandle=record.receipt,
            VisibilityTimeout=seconds,
        )

    def dead_letter(self, record: QueueRecord) -> None:
        if self.dead_letter_queue_url:
            self._call(
                "send_message",
                QueueUrl=self.dead_letter_queue_url,
                MessageBody=record.body,
                MessageGroupId=record.group_id or "dead",
                MessageDeduplicationId=record.message_id,
            )
        self.delete(record)

    def check_reachable(self) -> list[ProbeResult]:
        """GetQueueAttributes on the queue and its dead-letter queue (`chatbox doctor`)."""
        results = []
        for what, url in (("queue", self.queue_url), ("dead-letter queue", self.dead_letter_queue_url)):
            if not url:
                results.append(ProbeResult(what, "warn", "not configured", "set CHATBOX_SQS_DEAD_LETTER_QUEUE_URL"))
                continue
            try:
                answer = self._call(
                    "get_queue_attributes", QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
            except QueueError as exc:
                fix = "check the queue URL, CHATBOX_AWS_ENDPOINT_URL and the credentials"
                results.append(ProbeResult(what, "fail", str(exc), fix))
                continue
            waiting = answer.get("Attributes", {}).get("ApproximateNumberOfMessages", "?")
            results.append(ProbeResult(what, "ok", f"SQS reachable, about {waiting} message(s) waiting"))
        return results

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise QueueError(f"SQS {operation} failed: {exc}") from exc
        return response


def _client(settings: Settings) -> Any:
    # botocore's own session, not boto3's: boto3 adds nothing to a client but loads s3transfer (and its
    # multiprocessing imports).
    import botocore.session
    from botocore.config import Config

    return botocore.session.get_session().create_client(
        "sqs",
        endpoint_url=settings.aws_endpoint_url or None,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10),
    )


def record_from_lambda(record: Mapping[str, Any]) -> QueueRecord:
    """An SQS event record (as Lambda delivers it) as the core's QueueRecord."""
    attributes = record.get("attributes", {})
    return QueueRecord(
        message_id=record["messageId"],
        receipt=record["receiptHandle"],
        body=record["body"],
        group_id=attributes.get("MessageGroupId", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
    )
