"""The inbound Lambda entry (functions/inbound/handler.py) driven in-process with API Gateway HTTP API v2 events.

Configured the way the template configures it: the vault key and the database URL come from Secrets
Manager by ARN, accepted messages go to an SQS FIFO queue (both in moto, in-process).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chatbox.domain.addresses import AddressPolicy
from chatbox.domain.schemas import ConnectionCreate, MailboxCreate
from chatbox.domain.settings import get_settings
from chatbox.domain.vault import Vault, generate_key
from chatbox.ports.platforms import PlatformRegistry
from chatbox.services.accounts import create_account
from chatbox.services.connections import create_connection
from chatbox.services.mailboxes import create_mailbox
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head
from connectors import builtin_platforms
from tests.test_lambda_api import PUBLIC_URL, LambdaContext, body_of, recorded_event

EVENTS = Path(__file__).parent / "events"
HANDLER_MODULE = "functions.inbound.handler"
REGION = "eu-west-1"


@dataclass
class LoadedInbound:
    module: ModuleType
    connection_id: str
    inbound_token: str
    queue_url: str

    def message_event(self, **overrides: Any) -> dict[str, Any]:
        """The recorded connector POST, aimed at this connection with its token; body fields overridden."""
        event = copy.deepcopy(recorded_event("apigw_v2_post_inbound_message.json"))
        path = f"/v1/connections/{self.connection_id}/messages"
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = {"connection_id": self.connection_id}
        event["headers"]["authorization"] = f"Bearer {self.inbound_token}"
        body = {**json.loads(event["body"]), **overrides}
        event["body"] = json.dumps(body)
        event["headers"]["content-length"] = str(len(event["body"]))
        return event

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.handler(event, LambdaContext(function_name="chatbox-inbound"))
        return response

    def queued_bodies(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]


@pytest.fixture
def inbound_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadedInbound]:
    """A cold start: secrets by ARN from Secrets Manager, SQS queue URL from the environment, app built at import."""
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    vault_key = generate_key()
    database = Database(url)
    upgrade_to_head(database.engine)
    with database.session() as db:
        account_id = create_account(db, "acme").account_id
        mailbox = create_mailbox(db, account_id, MailboxCreate(name="agent"), policy=AddressPolicy()).mailbox
        connection = create_connection(
            db,
            Vault.from_strings(vault_key, ""),
            PlatformRegistry(builtin_platforms()),
            account_id,
            mailbox.id,
            ConnectionCreate(platform="signal"),
        )
    database.dispose()
    for name in [name for name in os.environ if name.startswith(("CHATBOX_", "AWS_"))]:
        monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        vault_arn = secrets.create_secret(Name="chatbox/vault-key", SecretString=vault_key)["ARN"]
        db_arn = secrets.create_secret(Name="chatbox/db-url", SecretString=url)["ARN"]
        sqs = boto3.client("sqs", region_name=REGION)
        dlq_url = sqs.create_queue(QueueName="deliveries-dead.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        queue_url = sqs.create_queue(QueueName="deliveries.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for name, value in {
            "CHATBOX_VAULT_KEY_SECRET_ARN": vault_arn,
            "CHATBOX_DB_URL_SECRET_ARN": db_arn,
            "CHATBOX_QUEUE": "sqs",
            "CHATBOX_SQS_QUEUE_URL": queue_url,
            "CHATBOX_SQS_DEAD_LETTER_QUEUE_URL": dlq_url,
            "CHATBOX_HOME": str(tmp_path / "home"),
            "CHATBOX_PUBLIC_URL": PUBLIC_URL,
        }.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        sys.modules.pop(HANDLER_MODULE, None)
        module = importlib.import_module(HANDLER_MODULE)
        try:
            yield LoadedInbound(module, connection.connection.id, connection.inbound_token, queue_url)
        finally:
            module.runtime.close()
            sys.modules.pop(HANDLER_MODULE, None)
            get_settings.cache_clear()


def test_secrets_by_arn_are_resolved_at_cold_start(inbound_handler: LoadedInbound) -> None:
    settings = inbound_handler.module.runtime.settings

    assert settings.db_url.startswith("sqlite:///") and settings.vault_key
    assert inbound_handler(recorded_event("apigw_v2_get_health.json"))["statusCode"] == 200


def test_connector_message_is_accepted_and_queued_then_a_warm_retry_is_a_duplicate(
    inbound_handler: LoadedInbound,
) -> None:
    event = inbound_handler.message_event()

    cold = inbound_handler(event)
    warm = inbound_handler(event)  # the connector retried: same external_message_id

    assert cold["statusCode"] == 202, cold["body"]
    accepted = body_of(cold)
    assert accepted["chat_id"] == "signal:+4915112345678" and accepted["duplicate"] is False
    assert warm["statusCode"] == 202, warm["body"]
    assert body_of(warm)["message_id"] == accepted["message_id"] and body_of(warm)["duplicate"] is True
    [queued] = inbound_handler.queued_bodies()
    assert queued["delivery_id"].startswith("dlv_")


def test_wrong_inbound_token_is_a_json_401(inbound_handler: LoadedInbound) -> None:
    event = inbound_handler.message_event()
    event["headers"]["authorization"] = "Bearer inb_wrong"

    response = inbound_handler(event)

    assert response["statusCode"] == 401
    assert body_of(response)["code"] == "unauthorized"
    assert inbound_handler.queued_bodies() == []


def test_the_fast_lane_serves_posts_and_fastapi_is_composed_only_for_what_it_hands_on(
    inbound_handler: LoadedInbound,
) -> None:
    behind = inbound_handler.module.app.app  # the lazily composed FastAPI app behind the lane

    accepted = inbound_handler(inbound_handler.message_event())
    composed_by_post = behind.app is not None
    health = inbound_handler(recorded_event("apigw_v2_get_health.json"))

    assert accepted["statusCode"] == 202, accepted["body"]
    assert not composed_by_post
    assert health["statusCode"] == 200
    assert behind.app is not None


def test_inbound_function_serves_no_management_routes(inbound_handler: LoadedInbound) -> None:
    event = copy.deepcopy(recorded_event("apigw_v2_get_health.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/mailboxes"

    response = inbound_handler(event)

    assert response["statusCode"] == 404


def _emf_lines(output: str) -> list[dict[str, Any]]:
    """The CloudWatch Embedded Metric Format lines of stdout (the JSON log lines are the others)."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def test_an_invocation_prints_its_metrics_as_emf_to_stdout(
    inbound_handler: LoadedInbound, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()  # the cold start's output

    accepted = inbound_handler(inbound_handler.message_event())
    emf = _emf_lines(capsys.readouterr().out)
    again = inbound_handler(recorded_event("apigw_v2_get_health.json"))
    after_health = _emf_lines(capsys.readouterr().out)

    assert accepted["statusCode"] == 202
    assert again["statusCode"] == 200
    by_name: dict[str, dict[str, Any]] = {}
    for line in emf:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "chatbox"
        for metric in directive["Metrics"]:
            by_name[metric["Name"]] = {**line, "unit": metric["Unit"], "dimensions": directive["Dimensions"]}
    assert {
        "chatbox_http_requests",
        "chatbox_http_request_duration_seconds",
        "chatbox_inbound_messages",
        "chatbox_accept_duration_seconds",
    } <= set(by_name)
    inbound = by_name["chatbox_inbound_messages"]
    assert (inbound["platform"], inbound["outcome"], inbound["chatbox_inbound_messages"]) == (
        "signal",
        "accepted",
        [1.0],
    )
    assert by_name["chatbox_accept_duration_seconds"]["unit"] == "Seconds"
    assert by_name["chatbox_http_requests"]["route"] == "/v1/connections/{connection_id}/messages"
    # Flushed per invocation: the next one prints only its own figures.
    assert [line.get("route") for line in after_health if "chatbox_http_requests" in line] == ["/health"]
