"""The delivery pipeline as deployed: template.yaml translated offline and created on moto's server, the queues
and the delivery function's environment taken from that stack, SQS -> Lambda driven by an emulated event source
mapping with the stack's settings. A chat whose message failed gets its next message within the retry backoff
(the stack's default, 5 s), not the queue's visibility timeout (1080 s).

moto would run the mapping itself by invoking the function's code, which needs Docker; the mapping is read from
the stack, disabled, and emulated here the way Lambda runs it: receive up to BatchSize records, invoke, delete
those not reported in `batchItemFailures`. One moto FIFO flaw is corrected (tests/support/sqs.py,
`release_expired_in_flight_messages`): it would hand out a chat's second message before its first.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings, get_settings
from chatbox.domain.vault import generate_key
from tests.conftest import make_account, platforms_without_connectors
from tests.support.api import create_connection, create_mailbox
from tests.support.pipeline import eventually, post_inbound
from tests.support.receiver import Reply, WebhookReceiver, running_receiver
from tests.support.sqs import moto_server, release_expired_in_flight_messages
from tests.test_deployment import (
    moto_partial_cloudformation,
    translate,
    without_custom_resources,
    without_service_discovery,
)
from tests.test_lambda_api import LambdaContext

REGION = "us-east-1"
HANDLER_MODULE = "functions.delivery.handler"
TEST_ONLY = {
    # The receiver listens on loopback, which the address policy refuses on a real deploy.
    "CHATBOX_ALLOW_PRIVATE_WEBHOOKS": "1",
    "CHATBOX_ALLOW_LOOPBACK_WEBHOOKS": "1",
}


@dataclass
class DeployedDelivery:
    environment: dict[str, str]  # the delivery function's, as the stack created it (plus the moto endpoint)
    queue_url: str
    batch_size: int
    function_response_types: list[str]
    visibility_timeout: int


def _client(service: str, endpoint: str) -> Any:
    make_client: Any = boto3.client  # typed per service name; these are chosen at run time
    return make_client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
def moto_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    release_expired_in_flight_messages(monkeypatch)
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def deployed(moto_endpoint: str, db_url: str) -> DeployedDelivery:
    secretsmanager = _client("secretsmanager", moto_endpoint)
    suffix = secrets.token_hex(3)  # moto's backends are shared by every server of the process
    vault_arn = secretsmanager.create_secret(Name=f"chatbox/vault-{suffix}", SecretString=generate_key())["ARN"]
    db_arn = secretsmanager.create_secret(Name=f"chatbox/db-{suffix}", SecretString=db_url)["ARN"]
    parameters = {"VaultKeySecretArn": vault_arn, "DatabaseUrlSecretArn": db_arn}
    template = without_service_discovery(without_custom_resources(translate(parameters)))
    s3 = _client("s3", moto_endpoint)
    s3.create_bucket(Bucket="chatbox-artifacts")
    for name in template["Resources"]:
        s3.put_object(Bucket="chatbox-artifacts", Key=f"{name}.zip", Body=b"PK\x05\x06" + bytes(18))
    cloudformation = _client("cloudformation", moto_endpoint)
    stack_name = f"chatbox-{suffix}"
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    }
    lambda_client = _client("lambda", moto_endpoint)
    function = lambda_client.get_function_configuration(FunctionName=resources["DeliveryFunction"])
    [mapping] = lambda_client.list_event_source_mappings(FunctionName=resources["DeliveryFunction"])[
        "EventSourceMappings"
    ]
    # moto would run the function's code itself (Docker); the loop below stands in for the mapping.
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    sqs = _client("sqs", moto_endpoint)
    queue_url = sqs.get_queue_url(QueueName=mapping["EventSourceArn"].rsplit(":", 1)[1])["QueueUrl"]
    assert queue_url.rsplit("/", 1)[1] == resources["DeliveryQueue"].rsplit("/", 1)[1]
    visibility = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    return DeployedDelivery(
        environment={**function["Environment"]["Variables"], "CHATBOX_AWS_ENDPOINT_URL": moto_endpoint},
        queue_url=queue_url,
        batch_size=mapping["BatchSize"],
        function_response_types=mapping["FunctionResponseTypes"],
        visibility_timeout=int(visibility["VisibilityTimeout"]),
    )


@pytest.fixture
def delivery_handler(
    deployed: DeployedDelivery, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ModuleType]:
    """functions/delivery/handler.py imported as a cold start would, with the stack's environment: its secrets
    are read by ARN from moto's Secrets Manager."""
    for name in [name for name in os.environ if name.startswith("CHATBOX_")]:
        monkeypatch.delenv(name)
    for name, value in {**deployed.environment, **TEST_ONLY, "CHATBOX_HOME": str(tmp_path / "lambda")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    sys.modules.pop(HANDLER_MODULE, None)
    module = importlib.import_module(HANDLER_MODULE)
    try:
        yield module
    finally:
        module.runtime.close()
        sys.modules.pop(HANDLER_MODULE, None)
        get_settings.cache_clear()


@pytest.fixture
def api(delivery_handler: ModuleType, tmp_path: Path) -> Iterator[TestClient]:
    """The inbound side on the same database and queue (its settings: the delivery function's, resolved)."""
    settings: Settings = delivery_handler.runtime.settings.model_copy(update={"home": tmp_path / "api"})
    runtime = build_runtime(settings, platforms=platforms_without_connectors())
    try:
        with TestClient(create_app(runtime)) as client:
            yield client
    finally:
        runtime.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _event_source_mapping(deployed: DeployedDelivery, handler: Callable[..., dict[str, Any]], sqs: Any) -> int:
    """One poll of the emulated mapping: what Lambda does for an SQS FIFO source with ReportBatchItemFailures."""
    received = sqs.receive_message(
        QueueUrl=deployed.queue_url,
        MaxNumberOfMessages=deployed.batch_size,
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])
    if not received:
        return 0
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{deployed.queue_url.rsplit('/', 1)[1]}",
                "awsRegion": REGION,
            }
            for m in received
        ]
    }
    response = handler(event, LambdaContext(function_name="chatbox-delivery"))
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for message in received:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=deployed.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return len(received)


@moto_partial_cloudformation
def test_a_chats_next_message_is_delivered_within_the_backoff_not_the_visibility_timeout(
    deployed: DeployedDelivery,
    delivery_handler: ModuleType,
    api: TestClient,
    receiver: WebhookReceiver,
    moto_endpoint: str,
) -> None:
    assert deployed.function_response_types == ["ReportBatchItemFailures"]
    assert deployed.visibility_timeout == 1080  # what a failed record would wait without the core's backoff
    retry_base = float(deployed.environment.get("CHATBOX_DELIVERY_RETRY_BASE_SECONDS", "5"))
    account = make_account(delivery_handler.runtime, "acme")
    mailbox = create_mailbox(api, account, webhook_url=receiver.url)
    connection = create_connection(api, account, mailbox["id"], platform="discord")
    receiver.script = [Reply(status=500)]  # chat A's first message fails once
    post_inbound(api, connection, "a-1", "a one", external_chat_id="A")
    post_inbound(api, connection, "a-2", "a two", external_chat_id="A")
    sqs = _client("sqs", moto_endpoint)

    def chat_a_delivered() -> bool:
        _event_source_mapping(deployed, delivery_handler.handler, sqs)
        return [r.json()["message"]["text"] for r in receiver.requests].count("a two") == 1

    # Bounded far below the visibility timeout: the first retry comes after about 5 s (+-20 %).
    eventually(chat_a_delivered, timeout=retry_base * 1.2 + 20, interval=0.2)

    assert [r.json()["message"]["text"] for r in receiver.requests] == ["a one", "a one", "a two"]
