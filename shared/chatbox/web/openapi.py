"""The OpenAPI document, completed from the registered platforms.

FastAPI builds the document from static route declarations; which platforms exist is only known
at composition, so the platform enums and the ingest route's proof-of-origin headers are filled in
here from the runtime's `PlatformRegistry`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from chatbox.ports.platforms import PlatformRegistry

INGEST_PATH = "/v1/ingest/{platform}/{connection_id}"


def install_platform_openapi(app: FastAPI, platforms: PlatformRegistry) -> None:
    """Make `app.openapi()` name the registered platforms (built once, on first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            add_platforms(document, platforms)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the document


def add_platforms(document: dict[str, Any], platforms: PlatformRegistry) -> None:
    names = list(platforms.names())
    schemas = document.get("components", {}).get("schemas", {})
    for model in ("ConnectionCreate", "ConnectionPublic", "ConnectionCreated"):
        platform = schemas.get(model, {}).get("properties", {}).get("platform")
        if platform is not None:
            platform["enum"] = names
    ingest = document.get("paths", {}).get(INGEST_PATH, {}).get("post")
    if ingest is None:
        return
    webhook_specs = [spec for spec in platforms.specs() if spec.receives_webhooks]
    for parameter in ingest.get("parameters", []):
        if parameter.get("name") == "platform":
            parameter["schema"]["enum"] = [spec.name for spec in webhook_specs]
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    requirements: list[dict[str, list[str]]] = []
    for spec in webhook_specs:
        requirement: dict[str, list[str]] = {}
        for header, description in spec.ingest_headers.items():
            name = f"{spec.name}:{header}"
            schemes[name] = {
                "type": "apiKey",
                "in": "header",
                "name": header,
                "description": f"{spec.label}: {description}",
            }
            requirement[name] = []
        if requirement:
            requirements.append(requirement)
    if requirements:
        ingest["security"] = requirements
