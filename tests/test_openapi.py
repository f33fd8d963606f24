"""The OpenAPI document kept in the repo (docs/openapi.json) is the one the app serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatbox.cli.openapi_export import build_openapi_document, render_openapi_document

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.exists(), "docs/openapi.json is missing: run `make openapi`"
    assert COMMITTED.read_text(encoding="utf-8") == render_openapi_document(), (
        "docs/openapi.json is stale: run `make openapi` and commit the result"
    )


# Platforms authenticate their webhooks their own way (secret token header, request signature): the
# schemes come from the registered platform specs.
PLATFORM_AUTHENTICATED = {
    "POST /v1/ingest/{platform}/{connection_id}": {
        "telegram:X-Telegram-Bot-Api-Secret-Token",
        "slack:X-Slack-Signature",
    }
}


def test_every_v1_operation_requires_the_bearer_scheme() -> None:
    document = build_openapi_document()
    schemes = document["components"]["securitySchemes"]
    bearer_names = {
        name
        for name, scheme in schemes.items()
        if scheme.get("type") == "http" and str(scheme.get("scheme", "")).lower() == "bearer"
    }
    assert bearer_names, "no HTTP bearer security scheme is declared"
    v1 = [(method, path, op) for method, path, op in _operations(document) if path.startswith("/v1/")]
    assert v1, "the app serves no /v1 operation"
    unguarded = [
        f"{method} {path}"
        for method, path, op in v1
        if not any(
            name in requirement
            for requirement in op.get("security", [])
            for name in bearer_names | PLATFORM_AUTHENTICATED.get(f"{method} {path}", set())
        )
    ]
    assert unguarded == [], f"/v1 operations without the bearer scheme: {unguarded}"


def test_health_and_metrics_need_no_auth() -> None:
    document = build_openapi_document()
    for path in ("/health", "/metrics"):
        assert "security" not in document["paths"][path]["get"], f"{path} must stay open"


def test_platform_enums_and_ingest_proofs_come_from_the_registered_platforms() -> None:
    document = build_openapi_document()
    schemas = document["components"]["schemas"]
    ingest = document["paths"]["/v1/ingest/{platform}/{connection_id}"]["post"]
    [platform_parameter] = [p for p in ingest["parameters"] if p["name"] == "platform"]

    assert schemas["ConnectionCreate"]["properties"]["platform"]["enum"] == ["discord", "signal", "slack", "telegram"]
    assert platform_parameter["schema"]["enum"] == ["slack", "telegram"]
    assert {"slack:X-Slack-Signature", "slack:X-Slack-Request-Timestamp"} in [set(r) for r in ingest["security"]]
