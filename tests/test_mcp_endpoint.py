"""The one MCP endpoint both servers use: its answers before any MCP processing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chatbox.asgi import create_mcp_app
from chatbox.compose import build_runtime
from chatbox.domain.settings import Settings
from chatbox.domain.vault import generate_key

MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}

# Fixed, well-formed ids: parametrized test ids must be the same in every pytest-xdist worker.
MAILBOX = "mbx_01JD3ZZZZZZZZZZZZZZZZZZZZZ"
ACCOUNT = "acct_01JD3ZZZZZZZZZZZZZZZZZZZZZ"


@pytest.fixture
def unreachable_database_client(tmp_path: Path) -> Iterator[TestClient]:
    """The MCP app over a database that cannot be opened (its folder does not exist)."""
    settings = Settings(
        home=tmp_path / "home", db_url=f"sqlite:///{tmp_path / 'absent' / 'chatbox.db'}", vault_key=generate_key()
    )
    runtime = build_runtime(settings)
    try:
        with TestClient(create_mcp_app(runtime)) as client:
            yield client
    finally:
        runtime.close()


@pytest.mark.parametrize("path", [f"/mcp/{MAILBOX}", f"/mcp/admin/{ACCOUNT}"])
def test_an_unreachable_database_answers_503_not_a_crash(unreachable_database_client: TestClient, path: str) -> None:
    response = unreachable_database_client.post(
        path, json=TOOLS_LIST, headers={**MCP_HEADERS, "authorization": "Bearer some-token"}
    )

    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


@pytest.mark.parametrize(
    ("path", "realm", "credential"),
    [
        (f"/mcp/{MAILBOX}", "chatbox-mcp", "<mcp_token>"),
        (f"/mcp/admin/{ACCOUNT}", "chatbox-admin-mcp", "<api_key>"),
    ],
)
def test_a_missing_token_is_401_naming_the_credential_each_server_wants(
    unreachable_database_client: TestClient, path: str, realm: str, credential: str
) -> None:
    response = unreachable_database_client.post(path, json=TOOLS_LIST, headers=MCP_HEADERS)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Bearer realm="{realm}"'
    assert credential in response.json()["message"]


@pytest.mark.parametrize("path", [f"/mcp/{MAILBOX}", f"/mcp/admin/{ACCOUNT}"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
def test_every_method_but_post_is_405_allow_post_before_authentication(
    unreachable_database_client: TestClient, path: str, method: str
) -> None:
    response = unreachable_database_client.request(method, path, headers={"accept": "text/event-stream"})

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":
        assert response.json()["code"] == "method_not_allowed"
