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
