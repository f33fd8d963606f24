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


def test_health_needs_no_auth_and_metrics_takes_an_optional_token() -> None:
    document = build_openapi_document()

    assert "security" not in document["paths"]["/health"]["get"], "/health must stay open"
    # A loopback client needs none when no CHATBOX_METRICS_TOKEN is configured; anyone else needs the token.
    assert document["paths"]["/metrics"]["get"]["security"] == [{"MetricsToken": []}, {}]
    assert {"401", "403"} <= set(document["paths"]["/metrics"]["get"]["responses"])


# Routes where an unknown id is a failed authentication (401), not a 404: the id is what the token is checked for.
ID_AUTHENTICATED = {"/v1/connections/{connection_id}/messages", "/v1/ingest/{platform}/{connection_id}"}


def test_every_operation_documents_the_errors_every_route_of_its_kind_answers() -> None:
    document = build_openapi_document()
    missing = []
    for method, path, operation in _operations(document):
        parameters = operation.get("parameters", [])
        expected = {"401"} if path.startswith("/v1/") else set()
        if "requestBody" in operation:
            expected |= {"400", "413", "422"}
        if any(parameter["in"] == "query" for parameter in parameters):
            expected.add("422")
        if path not in ID_AUTHENTICATED and any(parameter["in"] == "path" for parameter in parameters):
            expected.add("404")
        undocumented = expected - set(operation["responses"])
        if undocumented:
            missing.append(f"{method} {path}: {sorted(undocumented)}")

    assert missing == []


def test_error_answers_are_documented_with_the_error_body() -> None:
    document = build_openapi_document()
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")) and path != "/health":
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_platform_enums_and_ingest_proofs_come_from_the_registered_platforms() -> None:
    document = build_openapi_document()
    schemas = document["components"]["schemas"]
    ingest = document["paths"]["/v1/ingest/{platform}/{connection_id}"]["post"]
    [platform_parameter] = [p for p in ingest["parameters"] if p["name"] == "platform"]

    assert schemas["ConnectionCreate"]["properties"]["platform"]["enum"] == ["discord", "signal", "slack", "telegram"]
    assert platform_parameter["schema"]["enum"] == ["slack", "telegram"]
    assert {"slack:X-Slack-Signature", "slack:X-Slack-Request-Timestamp"} in [set(r) for r in ingest["security"]]
