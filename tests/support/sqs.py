"""moto's real SQS server on 127.0.0.1 with a FIFO delivery queue and its dead-letter queue."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@dataclass(frozen=True)
class SqsStack:
    endpoint: str
    queue_url: str
    dead_letter_queue_url: str

    def client(self) -> Any:
        return boto3.client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@contextmanager
def moto_server() -> Iterator[str]:
    """moto on a port the kernel picks as it binds (port 0): no other worker or suite can hold it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def create_queues(endpoint: str, *, max_receive_count: int = 3, visibility_timeout: int = 30) -> SqsStack:
    """A fresh FIFO work queue whose RedrivePolicy points at a fresh FIFO dead-letter queue."""
    suffix = secrets.token_hex(4)
    client = SqsStack(endpoint, "", "").client()
    dlq_url = client.create_queue(QueueName=f"deliveries-dlq-{suffix}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = client.create_queue(
        QueueName=f"deliveries-{suffix}.fifo",
        Attributes={
            "FifoQueue": "true",
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    return SqsStack(endpoint, queue_url, dlq_url)


def release_expired_in_flight_messages(monkeypatch: Any) -> None:
    """Fix moto's FIFO receive for the test: a message whose visibility timeout ran out is no longer in flight.

    moto (5.x) drops such a message from its in-flight set only when its receive loop reaches it, so with a chat's
    two messages back from a retry it skips the first (the second still counts as in flight) and hands out the
    second alone: a chat out of order, which real SQS never does. Releasing them all before each receive gives
    SQS's behaviour: the group's messages again, oldest first.
    """
    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message

    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        for message in list(queue.pending_messages):
            if message.visible:
                queue.pending_messages.remove(message)
        return original(self, queue_name, *args, **kwargs)

    monkeypatch.setattr(SQSBackend, "receive_message", receive_message)
