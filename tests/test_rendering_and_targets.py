"""Templates (validation, fallbacks, defaults) and webhook target safety (SSRF)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from chatbox.adapters.http_webhook import WebhookClient, parse_retry_after
from chatbox.asgi import create_app
from chatbox.domain.addresses import AddressPolicy, check_url_statically
from chatbox.domain.errors import InvalidInputError
from chatbox.domain.rendering import DEFAULT_TEMPLATES, VARIABLES, pick_template, render, validate_templates
from chatbox.runtime import Runtime
from chatbox.services.delivery_attempt import Deliverer, DeliveryPolicy, backoff_seconds
from chatbox.store.models import Delivery
from tests.conftest import AccountKey
from tests.support.api import assert_error, create_connection, create_mailbox
from tests.support.pipeline import post_inbound
from tests.support.receiver import running_receiver


def test_unknown_variable_is_refused_naming_it(client: TestClient, account: AccountKey) -> None:
    response = client.post(
        "/v1/mailboxes",
        json={"name": "a", "templates": {"focal_message": "$SENDER_NAME said $TEXTT"}},
        headers=account.headers,
    )

    body = assert_error(response, 422, "invalid_input")
    assert "$TEXTT" in body["message"] and "focal_message" in body["message"]


def test_update_with_a_bad_template_is_refused_and_changes_nothing(client: TestClient, account: AccountKey) -> None:
    mailbox = create_mailbox(client, account, templates={"notification": "$TEXT"})

    response = client.put(
        f"/v1/mailboxes/{mailbox['id']}", json={"templates": {"notification": "cost: $5"}}, headers=account.headers
    )

    assert_error(response, 422, "invalid_input")
    fetched = client.get(f"/v1/mailboxes/{mailbox['id']}", headers=account.headers).json()
    assert fetched["templates"] == {"notification": "$TEXT"}


@pytest.mark.parametrize("name", ["message", "focal", "Notification", "edit"])
def test_unknown_template_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match=name):
        validate_templates({name: "$TEXT"})


def test_every_documented_variable_and_the_defaults_validate() -> None:
    validate_templates({"focal_message": " ".join(f"${v}" for v in VARIABLES), "ephemeral": "$$literal ${TEXT}"})
    validate_templates(DEFAULT_TEMPLATES)


def test_event_templates_fall_back_to_the_message_ones() -> None:
    templates = {"focal_message": "F", "notification": "N", "focal_edit": "FE"}

    assert pick_template(templates, focal=True, event_type="edit") == "FE"
    assert pick_template(templates, focal=True, event_type="reaction") == "F"
    assert pick_template(templates, focal=False, event_type="edit") == "N"
    assert pick_template({}, focal=False, event_type="message") == DEFAULT_TEMPLATES["notification"]


def test_ephemeral_renders_only_when_set() -> None:
    variables = {"TEXT": "hi", "UNREAD": "3"}

    assert render({}, focal=True, event_type="message", variables=variables).ephemeral is None
    rendered = render({"ephemeral": "$UNREAD unread"}, focal=True, event_type="message", variables=variables)
    assert rendered.ephemeral == "3 unread"


def test_backoff_follows_the_documented_schedule_within_jitter() -> None:
    expected = [5, 30, 180, 1080, 6480, 38880, 43200, 43200]
    for attempt, base in enumerate(expected, start=1):
        delay = backoff_seconds(attempt, 5)
        assert base * 0.8 <= delay <= min(base * 1.2, 43200)


@pytest.mark.parametrize(
    ("header", "seconds"), [("7", 7.0), ("", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)]
)
def test_retry_after_header_is_read(header: str, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://192.168.1.10/hook",
    ],
)
def test_private_webhook_targets_are_refused_at_configuration(
    client: TestClient, account: AccountKey, url: str
) -> None:
    response = client.post("/v1/mailboxes", json={"name": "a", "webhook_url": url}, headers=account.headers)

    assert_error(response, 422, "invalid_input")


def test_loopback_allowance_does_not_open_private_ranges() -> None:
    policy = AddressPolicy(allow_loopback=True)

    check_url_statically("http://127.0.0.1:9/x", policy)
    with pytest.raises(InvalidInputError):
        check_url_statically("http://10.1.2.3/x", policy)
    assert not policy.permits(ipaddress.ip_address("::ffff:10.0.0.1"))


def test_send_time_check_refuses_a_name_resolving_to_a_private_address(
    client: TestClient, runtime: Runtime, account: AccountKey, tmp_path: Path
) -> None:
    # Configured while private targets were allowed; the deliverer that runs now forbids them.
    with running_receiver() as receiver:
        allowed = Runtime(
            settings=runtime.settings.model_copy(update={"allow_private_webhooks": True}),
            db=runtime.db,
            vault=runtime.vault,
            queue=runtime.queue,
            webhook_sender=runtime.webhook_sender,
            platforms=runtime.platforms,
        )
        with TestClient(create_app(allowed)) as permissive:
            mailbox = create_mailbox(permissive, account, webhook_url=receiver.url.replace("127.0.0.1", "localhost"))
            connection = create_connection(permissive, account, mailbox["id"], platform="signal")
            post_inbound(permissive, connection, "m-1")
        strict = Deliverer(runtime.db, runtime.vault, WebhookClient(AddressPolicy()), DeliveryPolicy())
        with runtime.db.session() as db:
            delivery = db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox["id"])).one()

        strict.deliver(delivery.id)
        strict.client.close()

        assert receiver.requests == []
    with runtime.db.session() as db:
        refused = db.get(Delivery, delivery.id)
        assert refused is not None
        assert refused.status == "pending" and refused.attempts == 1
        assert "SSRF" in (refused.last_error or "")
