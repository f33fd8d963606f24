"""Routers of `DeclaredRoute`s (chatbox.web.declared_routes) serve and document exactly what FastAPI's own routes do,
and leave a route's analysis to the first request that walks through its router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from chatbox.web.declared_routes import DeclaredRoute, declared_router
from chatbox.web.errors import THROTTLED_RESPONSES, error_responses, install_error_handlers


class ThingCreate(BaseModel):
    name: str = Field(min_length=1, max_length=8)


class Thing(BaseModel):
    id: int
    name: str
    tag: str | None = None


def caller(x_caller: Annotated[str, Header()] = "anonymous") -> str:
    return x_caller


def routes_on(router: APIRouter) -> APIRouter:
    """The same endpoints on `router`: a body, path and query parameters, a dependency, a response model inferred
    and one given, a status code, documented errors, a plain response."""

    @router.post("", status_code=201, summary="Create", responses=error_responses(409, 422))
    def create(body: ThingCreate, who: Annotated[str, Depends(caller)]) -> Thing:
        return Thing(id=1, name=body.name, tag=who)

    @router.get("/{thing_id}", response_model=Thing, responses=error_responses(404))
    def read(thing_id: int, tag: Annotated[str | None, Query(max_length=4)] = None) -> Any:
        """Read a thing.

        \fNot documented."""
        return {"id": thing_id, "name": "n", "tag": tag, "dropped": True}

    @router.delete("/{thing_id}", status_code=204, response_class=Response, deprecated=True)
    def delete(thing_id: int) -> Response:
        return Response(status_code=204)

    return router


def app_of(make_router: Callable[..., APIRouter]) -> FastAPI:
    app = FastAPI(title="t", version="1")
    app.include_router(routes_on(make_router(prefix="/things", tags=["things"], responses=THROTTLED_RESPONSES)))
    install_error_handlers(app)
    return app


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/things", {"json": {"name": "a"}, "headers": {"x-caller": "me"}}),
    ("POST", "/things", {"json": {"name": ""}}),
    ("POST", "/things", {"content": b"{", "headers": {"content-type": "application/json"}}),
    ("GET", "/things/7", {"params": {"tag": "ab"}}),
    ("GET", "/things/7", {"params": {"tag": "abcdef"}}),
    ("GET", "/things/x", {}),
    ("DELETE", "/things/7", {}),
    ("PUT", "/things/7", {}),
]


@pytest.mark.parametrize(
    ("method", "path", "options"), REQUESTS, ids=[f"{m}-{p}-{i}" for i, (m, p, _) in enumerate(REQUESTS)]
)
def test_a_declared_router_answers_as_fastapis_own(method: str, path: str, options: dict[str, Any]) -> None:
    with TestClient(app_of(APIRouter)) as plain, TestClient(app_of(declared_router)) as declared:
        expected = plain.request(method, path, **options)
        answered = declared.request(method, path, **options)

    assert (answered.status_code, answered.headers.get("content-type"), answered.content) == (
        expected.status_code,
        expected.headers.get("content-type"),
        expected.content,
    )


def test_a_declared_router_is_documented_as_fastapis_own() -> None:
    assert app_of(declared_router).openapi() == app_of(APIRouter).openapi()


def test_a_declared_route_is_analysed_by_the_first_request_through_its_router_only() -> None:
    router = routes_on(declared_router(prefix="/things"))
    app = FastAPI()
    app.include_router(router)
    declared = [route for route in router.routes if isinstance(route, DeclaredRoute)]
    assert len(declared) == 3
    assert all("dependant" not in vars(route) for route in declared)

    with TestClient(app) as client:
        assert client.get("/things/3").json() == {"id": 3, "name": "n", "tag": None}

    # The app served its own copy of the route (FastAPI's per-inclusion analysis); the declared one stays as declared.
    assert all("dependant" not in vars(route) for route in declared)
    # Whatever asks the declared route itself for its analysis gets it, built as FastAPI builds it.
    assert declared[0].dependant.body_params[0].name == "body"
    assert declared[0].unique_id == "create_things_post"
