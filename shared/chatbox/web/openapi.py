"""The OpenAPI document, completed from the registered platforms and made to say what the app answers.

FastAPI builds the document from static route declarations; which platforms exist is only known
at composition, so the platform enums and the ingest route's proof-of-origin headers are filled in
here from the runtime's `PlatformRegistry`. FastAPI also documents a 422 of its own shape
(`HTTPValidationError`) on every route with parameters, while chatbox answers every error as
`ErrorBody` (`chatbox.web.errors`): those 422s are re-pointed at it. Routes refer to `ErrorBody` by reference
(`chatbox.web.errors.error_responses`), so its schema is added to the components here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.models import Schema
from fastapi.openapi.utils import get_openapi

from chatbox.ports.platforms import PlatformRegistry
from chatbox.web.errors import ERROR_BODY_REF, ERROR_MEANINGS, ErrorBody

INGEST_PATH = "/v1/ingest/{platform}/{connection_id}"


def install_platform_openapi(app: FastAPI, platforms: PlatformRegistry) -> None:
    """Make `app.openapi()` name the registered platforms (built once, on first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            add_platforms(document, platforms)
            describe_validation_errors_as_answered(document)
            add_error_body_schema(document)
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


def describe_validation_errors_as_answered(document: dict[str, Any]) -> None:
    """Every 422 documented with FastAPI's `HTTPValidationError` becomes the `ErrorBody` chatbox answers."""
    fastapi_shape = "#/components/schemas/HTTPValidationError"
    for item in document.get("paths", {}).values():
        for operation in item.values():
            response: dict[str, Any] = operation.get("responses", {}).get("422", {})
            content: dict[str, Any] = response.get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == fastapi_shape:
                response["description"] = ERROR_MEANINGS[422]
                content["schema"] = {"$ref": "#/components/schemas/ErrorBody"}
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def add_error_body_schema(document: dict[str, Any]) -> None:
    """`ErrorBody` and what it refers to among the components, as FastAPI would have generated them from a
    `"model": ErrorBody` response, when an operation refers to it (each such response's `content` placed last, as
    FastAPI places it). The components stay sorted, as FastAPI sorts them."""
    referred = False
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if any(media.get("schema", {}).get("$ref") == ERROR_BODY_REF for media in content.values()):
                    referred = True
                    # Last, where FastAPI puts the content it generates from a response's model.
                    response["content"] = response.pop("content")
    if not referred:
        return
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    generated = {**schema.pop("$defs", {}), ErrorBody.__name__: schema}
    # Through FastAPI's own OpenAPI model, as `get_openapi` passes the whole document (key order, no nulls).
    definitions = {
        name: jsonable_encoder(Schema.model_validate(definition), by_alias=True, exclude_none=True)
        for name, definition in generated.items()
    }
    components = document.setdefault("components", {})
    merged = {**components.get("schemas", {}), **definitions}
    components["schemas"] = {name: merged[name] for name in sorted(merged)}
