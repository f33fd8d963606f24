"""The CMA adapter (examples/cma_adapter.py): a real chatbox delivers to it on 127.0.0.1, and it posts to a
stand-in of the Managed Agents sessions endpoint that checks headers and body (tests/support/managed_agents.py)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from chatbox.domain.settings import Settings
from chatbox.domain.signing import decode_signing_secret
from chatbox.domain.vault import generate_key
from chatbox.runtime import Runtime
from chatbox.store.models import Delivery
from examples.cma_adapter import AdapterConfig, ConfigError, create_app, parse_session_map
from tests.conftest import AccountKey
from tests.support.api import create_connection, create_credential, create_mailbox
from tests.support.managed_agents import (
    ApiReply,
    SessionsStandIn,
    running_sessions_stand_in,
    serving_with_lifespan,
)
from tests.support.pipeline import eventually, new_signing_secret, post_inbound, running_consumer

API_KEY = "sk-ant-api03-test-key-for-the-cma-stand-in-0001"
SESSION = "sesn_011CZkZAtmR3yMPDzynEDxu7"
MAX_ATTEMPTS = 3


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the adapter sees chatbox over HTTP alone, and the pipeline's two backends are covered by
    tests/test_pipeline_local.py."""
    target = tmp_path / "chatbox.db"
    shutil.copyfile(sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        db_url=db_url,
        vault_key=generate_key(),
        public_url="https://chatbox.example.test",
        allow_loopback_webhooks=True,
        delivery_retry_base_seconds=0.01,
        delivery_max_attempts=MAX_ATTEMPTS,
    )


@pytest.fixture
def signing_secret() -> str:
    return new_signing_secret()


@pytest.fixture
def stand_in() -> Iterator[SessionsStandIn]:
    with running_sessions_stand_in(API_KEY, {SESSION}) as running:
        yield running


def _config(stand_in: SessionsStandIn, signing_secret: str, mailbox_id: str, **fields: Any) -> AdapterConfig:
    return AdapterConfig(
        api_key=API_KEY,
        signing_key=decode_signing_secret(signing_secret),
        sessions={mailbox_id: SESSION},
        base_url=stand_in.url,
        **fields,
    )


def _signed_mailbox(client: TestClient, account: AccountKey, secret: str, **fields: Any) -> dict[str, Any]:
    credential = create_credential(client, account, kind="hmac_signing", name="cma", value=secret)
    return create_mailbox(client, account, signing_credential_id=credential["id"], **fields)


def _point_at(client: TestClient, account: AccountKey, mailbox_id: str, adapter_url: str) -> None:
    response = client.put(
        f"/v1/mailboxes/{mailbox_id}", json={"webhook_url": f"{adapter_url}/webhook"}, headers=account.headers
    )
    assert response.status_code == 200, response.text


def _deliveries(runtime: Runtime, mailbox_id: str) -> list[Delivery]:
    with runtime.db.session() as db:
        return list(db.scalars(select(Delivery).where(Delivery.mailbox_id == mailbox_id)))


def _signed_post(
    adapter_url: str, secret: str, body: dict[str, Any], webhook_id: str = "dlv_01JD3TESTTESTTESTTESTTESTT", **kw: Any
) -> httpx.Response:
    data = json.dumps(body)
    at: datetime = kw.pop("at", datetime.now(UTC))
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, data),
        **kw.pop("headers", {}),
    }
    return httpx.post(f"{adapter_url}/webhook", content=data, headers=headers, timeout=10, trust_env=False)


def _body(mailbox_id: str, content: str = "Ada: hello") -> dict[str, Any]:
    return {"type": "message", "id": "dlv_x", "mailbox_id": mailbox_id, "chat_id": "signal:chat-1", "content": content}


def test_inbound_message_reaches_the_session_as_a_user_message(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    stand_in: SessionsStandIn,
    signing_secret: str,
) -> None:
    mailbox = _signed_mailbox(client, account, signing_secret)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, mailbox["id"]))) as adapter_url:
        _point_at(client, account, mailbox["id"], adapter_url)
        with running_consumer(runtime):
            post_inbound(client, connection, "m-1", "hello agent", sender_name="Ada")
            [request] = stand_in.wait_for_requests(1)
            eventually(lambda: [d.status for d in _deliveries(runtime, mailbox["id"])] == ["delivered"])

    assert request.path == f"/v1/sessions/{SESSION}/events"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["anthropic-beta"] == "managed-agents-2026-04-01"
    [event] = request.json()["events"]
    assert event["type"] == "user.message"
    [block] = event["content"]
    assert block["type"] == "text"
    assert "Ada" in block["text"] and "hello agent" in block["text"]  # chatbox's rendered notification
    assert stand_in.refused == []
    assert stand_in.accepted[SESSION] == [event]


def test_ephemeral_goes_as_a_system_message_before_the_user_message(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    stand_in: SessionsStandIn,
    signing_secret: str,
) -> None:
    templates = {"notification": "$SENDER_NAME: $TEXT", "ephemeral": "Unread in $CHAT_ID: $UNREAD"}
    mailbox = _signed_mailbox(client, account, signing_secret, templates=templates)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, mailbox["id"]))) as adapter_url:
        _point_at(client, account, mailbox["id"], adapter_url)
        with running_consumer(runtime):
            post_inbound(client, connection, "m-1", "hi", sender_name="Ada")
            [request] = stand_in.wait_for_requests(1)

    system, user = request.json()["events"]
    assert system == {"type": "system.message", "content": [{"type": "text", "text": "Unread in signal:chat-1: 1"}]}
    # The user message carries the rendered content alone: per-turn context stays out of the conversation text.
    assert user == {"type": "user.message", "content": [{"type": "text", "text": "Ada: hi"}]}
    assert stand_in.refused == []


@pytest.mark.parametrize(
    ("mode", "expected_types", "user_texts"),
    [
        ("user", ["user.message"], ["Ada: hi", "per-turn context"]),
        ("drop", ["user.message"], ["Ada: hi"]),
    ],
    ids=["user", "drop"],
)
def test_ephemeral_mode_user_or_drop(
    stand_in: SessionsStandIn, signing_secret: str, mode: str, expected_types: list[str], user_texts: list[str]
) -> None:
    config = _config(stand_in, signing_secret, "mbx_1", ephemeral=mode)
    with serving_with_lifespan(create_app(config)) as adapter_url:
        body = {**_body("mbx_1", "Ada: hi"), "ephemeral": "per-turn context"}
        response = _signed_post(adapter_url, signing_secret, body)

    assert response.status_code == 200, response.text
    events = stand_in.accepted[SESSION]
    assert [event["type"] for event in events] == expected_types
    assert [block["text"] for block in events[0]["content"]] == user_texts


@pytest.mark.parametrize(
    "case",
    ["wrong-secret", "tampered-body", "no-signature", "stale-timestamp", "future-timestamp", "v2-only"],
)
def test_unproven_webhook_is_refused_with_401_and_nothing_is_sent(
    stand_in: SessionsStandIn, signing_secret: str, case: str
) -> None:
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:
        body = _body("mbx_1")
        if case == "wrong-secret":
            response = _signed_post(adapter_url, new_signing_secret(), body)
        elif case == "tampered-body":
            data = json.dumps(body)
            at = datetime.now(UTC)
            headers = {
                "webhook-id": "dlv_1",
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": Webhook(signing_secret).sign("dlv_1", at, data),
            }
            response = httpx.post(
                f"{adapter_url}/webhook", content=data.replace("hello", "HELLO"), headers=headers, trust_env=False
            )
        elif case == "no-signature":
            response = httpx.post(f"{adapter_url}/webhook", json=body, headers={"webhook-id": "dlv_1"}, trust_env=False)
        elif case == "stale-timestamp":
            response = _signed_post(adapter_url, signing_secret, body, at=datetime.now(UTC) - timedelta(minutes=6))
        elif case == "future-timestamp":
            response = _signed_post(adapter_url, signing_secret, body, at=datetime.now(UTC) + timedelta(minutes=6))
        else:
            at = datetime.now(UTC)
            signature = Webhook(signing_secret).sign("dlv_2", at, json.dumps(body))
            response = _signed_post(
                adapter_url,
                signing_secret,
                body,
                webhook_id="dlv_2",
                at=at,
                headers={"webhook-signature": signature.replace("v1,", "v2,")},
            )

    assert response.status_code == 401, response.text
    assert response.json() == {"error": "the webhook signature does not verify"}
    assert stand_in.accepted[SESSION] == []


def test_webhook_from_chatbox_signed_with_another_secret_is_never_sent(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    stand_in: SessionsStandIn,
    signing_secret: str,
) -> None:
    mailbox = _signed_mailbox(client, account, new_signing_secret())
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, mailbox["id"]))) as adapter_url:
        _point_at(client, account, mailbox["id"], adapter_url)
        with running_consumer(runtime):
            post_inbound(client, connection, "m-1")
            [delivery] = eventually(lambda: [d for d in _deliveries(runtime, mailbox["id"]) if d.status == "dead"])

    assert delivery.attempts == MAX_ATTEMPTS
    assert "401" in (delivery.last_error or "")
    assert stand_in.requests == []


def test_retried_webhook_id_is_sent_once(stand_in: SessionsStandIn, signing_secret: str) -> None:
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:
        first = _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_same")
        # chatbox's retry: the same id and body, a new timestamp and signature.
        retry = _signed_post(
            adapter_url,
            signing_secret,
            _body("mbx_1"),
            webhook_id="dlv_same",
            at=datetime.now(UTC) + timedelta(seconds=1),
        )
        other = _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_other")

    assert first.status_code == retry.status_code == other.status_code == 200
    assert first.json()["status"] == "sent" and first.json()["event_ids"]
    assert retry.json() == {"status": "duplicate", "session_id": SESSION}
    assert other.json()["status"] == "sent"
    assert len(stand_in.accepted[SESSION]) == 2
    assert len(stand_in.requests) == 2


def test_concurrent_deliveries_of_one_webhook_id_send_once(stand_in: SessionsStandIn, signing_secret: str) -> None:
    results: list[int] = []
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:

        def post() -> None:
            results.append(_signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_race").status_code)

        threads = [threading.Thread(target=post) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in threads)

    assert results == [200, 200, 200, 200]
    assert len(stand_in.accepted[SESSION]) == 1


def test_session_500_makes_chatbox_retry_and_the_message_arrives_once(
    client: TestClient,
    runtime: Runtime,
    account: AccountKey,
    stand_in: SessionsStandIn,
    signing_secret: str,
) -> None:
    mailbox = _signed_mailbox(client, account, signing_secret)
    connection = create_connection(client, account, mailbox["id"], platform="signal")
    stand_in.script.append(ApiReply(500, "api_error"))
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, mailbox["id"]))) as adapter_url:
        _point_at(client, account, mailbox["id"], adapter_url)
        with running_consumer(runtime):
            post_inbound(client, connection, "m-1", "hello once")
            [delivery] = eventually(lambda: [d for d in _deliveries(runtime, mailbox["id"]) if d.status == "delivered"])

    assert delivery.attempts == 2
    assert len(stand_in.requests) == 2  # the refused send and the accepted retry
    [event] = stand_in.accepted[SESSION]
    assert "hello once" in event["content"][0]["text"]


@pytest.mark.parametrize(
    ("api_status", "error_type", "retry_after", "adapter_status"),
    [
        (429, "rate_limit_error", "7", 429),
        (500, "api_error", None, 500),
        (529, "overloaded_error", "3", 503),
        (401, "authentication_error", None, 502),
        (404, "not_found_error", None, 502),
        (409, "invalid_request_error", None, 502),
    ],
    ids=["429", "500", "529", "401", "404", "409"],
)
def test_api_refusal_is_a_failure_chatbox_retries(
    stand_in: SessionsStandIn,
    signing_secret: str,
    api_status: int,
    error_type: str,
    retry_after: str | None,
    adapter_status: int,
) -> None:
    stand_in.script.append(ApiReply(api_status, error_type, {"retry-after": retry_after} if retry_after else {}))
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:
        refused = _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_r")
        retried = _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_r")

    assert refused.status_code == adapter_status, refused.text
    assert refused.headers.get("retry-after") == retry_after
    assert refused.json() == {"error": f"the sessions API answered {api_status} ({error_type})"}
    # A refused send is not remembered as sent: the retry goes through.
    assert retried.status_code == 200 and retried.json()["status"] == "sent"
    assert len(stand_in.accepted[SESSION]) == 1


def test_unreachable_api_is_a_502(signing_secret: str) -> None:
    with running_sessions_stand_in(API_KEY, {SESSION}) as gone:
        url = gone.url
    config = AdapterConfig(
        api_key=API_KEY, signing_key=decode_signing_secret(signing_secret), sessions={"mbx_1": SESSION}, base_url=url
    )
    with serving_with_lifespan(create_app(config)) as adapter_url:
        response = _signed_post(adapter_url, signing_secret, _body("mbx_1"))

    assert response.status_code == 502
    assert response.json() == {"error": "the sessions API is unreachable"}


def test_mailbox_without_a_session_is_404_and_nothing_is_sent(stand_in: SessionsStandIn, signing_secret: str) -> None:
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:
        response = _signed_post(adapter_url, signing_secret, _body("mbx_2"))

    assert response.status_code == 404
    assert stand_in.requests == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 400),
        (b'{"mailbox_id": "mbx_1"}', 422),
        (b'{"mailbox_id": "mbx_1", "content": " "}', 422),
    ],
    ids=["not-json", "not-object", "no-content", "blank-content"],
)
def test_signed_but_unusable_body_is_a_4xx(
    stand_in: SessionsStandIn, signing_secret: str, body: bytes, status: int
) -> None:
    at = datetime.now(UTC)
    headers = {
        "webhook-id": "dlv_1",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(signing_secret).sign("dlv_1", at, body.decode()),
    }
    with serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url:
        response = httpx.post(f"{adapter_url}/webhook", content=body, headers=headers, trust_env=False)

    assert response.status_code == status, response.text
    assert stand_in.requests == []


def test_no_secret_in_any_log_line(
    stand_in: SessionsStandIn, signing_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in.script.append(ApiReply(401, "authentication_error"))
    with (
        caplog.at_level(logging.DEBUG),
        serving_with_lifespan(create_app(_config(stand_in, signing_secret, "mbx_1"))) as adapter_url,
    ):
        _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_a")
        _signed_post(adapter_url, signing_secret, _body("mbx_1"), webhook_id="dlv_b")
        _signed_post(adapter_url, new_signing_secret(), _body("mbx_1"), webhook_id="dlv_c")
        _signed_post(adapter_url, signing_secret, _body("mbx_9"), webhook_id="dlv_d")

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "dlv_b sent to session" in text and "refused a webhook" in text  # the adapter did log
    assert API_KEY not in text
    assert signing_secret not in text and signing_secret.removeprefix("whsec_") not in text


def test_session_map_reads_json_and_pairs() -> None:
    assert parse_session_map('{"mbx_1": "sesn_a", "mbx_2": "sesn_b"}') == {"mbx_1": "sesn_a", "mbx_2": "sesn_b"}
    assert parse_session_map(" mbx_1=sesn_a, mbx_2 = sesn_b ,") == {"mbx_1": "sesn_a", "mbx_2": "sesn_b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "maps no mailbox"),
        ("mbx_1", "entry 1 is not MAILBOX_ID=SESSION_ID"),
        ("mbx_1=sesn_a,mbx_1=sesn_b", "entry 2: the mailbox is listed twice"),
        ("mbx_1=../../v1/agents", "entry 1: the session id"),
        ('{"mbx_1": 5}', "entry 1: the session id"),
        ("{not json", "not valid JSON"),
        ('["mbx_1"]', "must be a JSON object"),
    ],
    ids=["empty", "no-equals", "twice", "path", "not-string", "bad-json", "json-list"],
)
def test_malformed_session_map_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_session_map(text)


def test_config_from_env_names_the_missing_variable_and_never_a_secret(signing_secret: str) -> None:
    environ = {"ANTHROPIC_API_KEY": API_KEY, "CMA_SIGNING_SECRET": signing_secret, "CMA_SESSIONS": "mbx_1=sesn_a"}
    config = AdapterConfig.from_env(environ)
    assert config.base_url == "https://api.anthropic.com" and config.ephemeral == "system"
    assert API_KEY not in repr(config)
    for name in ("ANTHROPIC_API_KEY", "CMA_SIGNING_SECRET", "CMA_SESSIONS"):
        with pytest.raises(ConfigError, match=name):
            AdapterConfig.from_env({k: v for k, v in environ.items() if k != name})
    with pytest.raises(ConfigError, match="CMA_SIGNING_SECRET") as raised:
        AdapterConfig.from_env({**environ, "CMA_SIGNING_SECRET": API_KEY})
    assert API_KEY not in str(raised.value)
    with pytest.raises(ConfigError, match="CMA_EPHEMERAL"):
        AdapterConfig.from_env({**environ, "CMA_EPHEMERAL": "sometimes"})


def test_adapter_started_from_the_environment_refuses_to_start_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "CMA_SIGNING_SECRET", "CMA_SESSIONS"):
        monkeypatch.delenv(name, raising=False)
    # The lifespan reads the environment, as under `uvicorn examples.cma_adapter:app`, and fails the start.
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY is not set"), TestClient(create_app()):
        pass
