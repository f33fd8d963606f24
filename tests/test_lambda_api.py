"""The REST API's Lambda handler, driven in-process with API Gateway HTTP API (payload 2.0) events."""

from __future__ import annotations

import base64
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

import pytest

from chatbox.domain.settings import get_settings
from chatbox.domain.vault import generate_key
from chatbox.services.accounts import create_account
from chatbox.store.database import Database
from chatbox.store.migrate import upgrade_to_head

EVENTS = Path(__file__).parent / "events"
HANDLER_MODULE = "functions.api.handler"
PUBLIC_URL = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"


@dataclass
class LambdaContext:
    """The attributes of the context object the Lambda runtime passes to a Python handler."""

    function_name: str = "chatbox-api"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:chatbox-api"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "8f5b4b6e-2c1a-4d7e-9a53-0f6d2c9e1b7a"
    log_group_name: str = "/aws/lambda/chatbox-api"
    log_stream_name: str = "2026/11/26/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def recorded_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def v2_event(
    method: str,
    path: str,
    *,
    route_key: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """The recorded GET /health event, re-aimed at another route the way API Gateway would send it."""
    event = copy.deepcopy(recorded_event("apigw_v2_get_health.json"))
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = dict(pair.split("=", 1) for pair in query.split("&"))
    if route_key.endswith("{proxy+}"):
        prefix = route_key.split(" ", 1)[1].removesuffix("{proxy+}")
        event["pathParameters"] = {"proxy": path.removeprefix(prefix)}
    event["headers"].update(headers or {})
    if body is not None:
        event["headers"]["content-length"] = str(len(body))
        event["body"] = base64.b64encode(body).decode() if base64_body else body.decode()
        event["isBase64Encoded"] = base64_body
    return event


@dataclass
class LoadedHandler:
    module: ModuleType
    api_key: str

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.handler(event, LambdaContext())
        return response


@pytest.fixture
def lambda_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadedHandler]:
    """Import the handler module as a cold start would: settings from the environment, app built at import."""
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    database = Database(url)  # migrations run before deploys, never inside the API function
    upgrade_to_head(database.engine)
    with database.session() as db:
        api_key = create_account(db, "acme").secret
    database.dispose()
    for name in [name for name in os.environ if name.startswith("CHATBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CHATBOX_DB_URL", url)
    monkeypatch.setenv("CHATBOX_VAULT_KEY", generate_key())
    monkeypatch.setenv("CHATBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHATBOX_PUBLIC_URL", PUBLIC_URL)
    get_settings.cache_clear()
    sys.modules.pop(HANDLER_MODULE, None)
    module = importlib.import_module(HANDLER_MODULE)
    try:
        yield LoadedHandler(module, api_key)
    finally:
        module.handler.app.state.runtime.close()
        sys.modules.pop(HANDLER_MODULE, None)
        get_settings.cache_clear()


def body_of(response: dict[str, Any]) -> Any:
    raw = base64.b64decode(response["body"]) if response.get("isBase64Encoded") else response["body"].encode()
    return json.loads(raw)


def test_health_answers_on_cold_and_warm_invocations(lambda_handler: LoadedHandler) -> None:
    event = recorded_event("apigw_v2_get_health.json")

    cold = lambda_handler(event)
    warm = lambda_handler(event)

    for response in (cold, warm):
        assert response["statusCode"] == 200
        assert response["headers"]["content-type"] == "application/json"
        assert body_of(response) == {"status": "ok", "database": "ok", "schema": "ok"}


def test_warm_invocations_reuse_the_composed_app(lambda_handler: LoadedHandler) -> None:
    app_before = lambda_handler.module.handler.app

    lambda_handler(recorded_event("apigw_v2_get_health.json"))
    lambda_handler(recorded_event("apigw_v2_get_health.json"))

    assert lambda_handler.module.handler.app is app_before


def test_list_mailboxes_with_a_bearer_key(lambda_handler: LoadedHandler) -> None:
    event = v2_event(
        "GET",
        "/v1/mailboxes",
        route_key="ANY /v1/{proxy+}",
        headers={"authorization": f"Bearer {lambda_handler.api_key}"},
    )

    response = lambda_handler(event)

    assert response["statusCode"] == 200, response["body"]
    assert body_of(response) == {"items": [], "next_cursor": None}


def test_missing_bearer_key_is_a_json_401(lambda_handler: LoadedHandler) -> None:
    response = lambda_handler(v2_event("GET", "/v1/mailboxes", route_key="ANY /v1/{proxy+}"))

    assert response["statusCode"] == 401
    assert body_of(response)["code"] == "unauthorized"


def test_create_mailbox_with_a_base64_body_then_page_with_a_query_string(lambda_handler: LoadedHandler) -> None:
    auth = {"authorization": f"Bearer {lambda_handler.api_key}", "content-type": "application/json"}
    for name in ("first", "second"):
        created = lambda_handler(
            v2_event(
                "POST",
                "/v1/mailboxes",
                route_key="ANY /v1/{proxy+}",
                headers=auth,
                body=json.dumps({"name": name}).encode(),
                base64_body=True,
            )
        )
        assert created["statusCode"] == 201, created["body"]
        assert body_of(created)["mcp_url"] == f"{PUBLIC_URL}/mcp/{body_of(created)['id']}"

    page = lambda_handler(v2_event("GET", "/v1/mailboxes", route_key="ANY /v1/{proxy+}", query="limit=1", headers=auth))

    assert page["statusCode"] == 200, page["body"]
    assert [item["name"] for item in body_of(page)["items"]] == ["first"]
    assert body_of(page)["next_cursor"] is not None


def test_plain_text_json_body_with_non_ascii_is_accepted(lambda_handler: LoadedHandler) -> None:
    event = v2_event(
        "POST",
        "/v1/mailboxes",
        route_key="ANY /v1/{proxy+}",
        headers={"authorization": f"Bearer {lambda_handler.api_key}", "content-type": "application/json"},
        body=json.dumps({"name": "Zoë's agent 🤖"}, ensure_ascii=False).encode(),
    )

    response = lambda_handler(event)

    assert response["statusCode"] == 201, response["body"]
    assert body_of(response)["name"] == "Zoë's agent 🤖"


def test_unknown_route_is_a_json_404(lambda_handler: LoadedHandler) -> None:
    event = v2_event("GET", "/v1/nothing-here", route_key="ANY /v1/{proxy+}")

    response = lambda_handler(event)

    assert response["statusCode"] == 404
    assert "code" in body_of(response)


@pytest.mark.parametrize(
    "path",
    ["/v1/ingest/telegram/con_01JD0000000000000000000000", "/v1/connections/con_01JD0000000000000000000000/messages"],
)
def test_other_methods_on_the_ingest_routes_are_a_json_405_allow_post(lambda_handler: LoadedHandler, path: str) -> None:
    # The template sends these routes' POSTs to the inbound function; other methods reach this one.
    event = v2_event("GET", path, route_key="ANY /v1/{proxy+}")

    response = lambda_handler(event)

    assert response["statusCode"] == 405, response["body"]
    assert response["headers"]["allow"] == "POST"
    assert body_of(response)["code"] == "method_not_allowed"


def test_an_ingest_post_that_reaches_the_api_function_is_served_as_the_inbound_function_serves_it(
    lambda_handler: LoadedHandler,
) -> None:
    path = "/v1/connections/con_01JD0000000000000000000000/messages"
    event = v2_event(
        "POST",
        path,
        route_key="ANY /v1/{proxy+}",
        headers={"authorization": "Bearer inb_" + "x" * 40, "content-type": "application/json"},
        body=b'{"external_chat_id": "c1", "external_message_id": "m1", "text": "hi"}',
    )

    response = lambda_handler(event)

    assert response["statusCode"] == 401, response["body"]
    assert body_of(response)["code"] == "unauthorized"
