"""Routers whose routes are analysed when an app first serves (or documents) them, not when they are declared.

FastAPI analyses a route twice when it sits in an `APIRouter` that an app includes: once when the route is
declared (the endpoint's dependencies and parameters, a pydantic `TypeAdapter` for its response model and for
each documented error response) and again, per inclusion, the first time a request walks through that router
(`include_router` keeps a reference; the app serves and documents the per-inclusion copies). The first analysis
is never used by an app that includes the router, yet it is most of the API function's cold start (some 40
routes). `DeclaredRoute` records what the route was declared with and builds itself only if something asks for
the analysed state of the declared route itself; the app's own copies are built as FastAPI builds them, from the
same declaration, so what is served and documented does not change.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.routing import compile_path, get_name

# What FastAPI reads from a declared route when it builds the app's copy of it (`include_router`'s effective
# routes): the declaration, as the route's constructor received it. Anything else is the analysed state.
_DECLARED = (
    "response_model",
    "status_code",
    "summary",
    "description",
    "response_description",
    "deprecated",
    "operation_id",
    "response_model_include",
    "response_model_exclude",
    "response_model_by_alias",
    "response_model_exclude_unset",
    "response_model_exclude_defaults",
    "response_model_exclude_none",
    "include_in_schema",
    "response_class",
    "dependency_overrides_provider",
    "callbacks",
    "openapi_extra",
    "generate_unique_id_function",
    "strict_content_type",
    "max_body_size",
)
# APIRoute's own defaults for what a declaration leaves out.
_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(APIRoute.__init__).parameters.items()
    if name in _DECLARED
}


class DeclaredRoute(APIRoute):
    """An `APIRoute` analysed on first use of its analysed state (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **declaration: Any) -> None:
        self.path = path
        self.endpoint = endpoint
        self._declaration = declaration
        if "form_limits" in declaration:
            # A declaration this module does not record: analysed now, as FastAPI would.
            self._analyse()
            return
        for attribute in _DECLARED:
            setattr(self, attribute, declaration.get(attribute, _DEFAULTS[attribute]))
        if isinstance(self.status_code, IntEnum):
            self.status_code = int(self.status_code)
        self.stream_item_type = None
        self.form_limits = {}
        self.tags = list(declaration.get("tags") or [])
        self.responses = dict(declaration.get("responses") or {})
        self.dependencies = list(declaration.get("dependencies") or [])
        name = declaration.get("name")
        self.name = get_name(endpoint) if name is None else name
        self.methods = {method.upper() for method in declaration.get("methods") or ["GET"]}
        self.path_regex, self.path_format, self.param_convertors = compile_path(path)

    def _analyse(self) -> None:
        declaration = self.__dict__.pop("_declaration")
        APIRoute.__init__(self, self.path, self.endpoint, **declaration)

    def __getattr__(self, attribute: str) -> Any:
        # Only called for what __init__ did not set: the analysed state (dependant, response fields, app, ...).
        if attribute.startswith("__") or "_declaration" not in self.__dict__:
            raise AttributeError(attribute)
        self._analyse()
        return getattr(self, attribute)


def declared_router(**options: Any) -> APIRouter:
    """An `APIRouter` of `DeclaredRoute`s: what chatbox's REST routers are."""
    return APIRouter(route_class=DeclaredRoute, **options)
