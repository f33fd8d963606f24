"""ASGI apps composed on their first request, for a root whose cold start should not pay for what it may not need."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send


class LazyApp:
    """Calls `build` once, on the first request (or lifespan event) that reaches it, and serves what it built."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            # Built without awaiting anything, so two requests of one event loop cannot both build it.
            self.app = self._build()
        await self.app(scope, receive, send)


class LazyRoutes:
    """Serves the HTTP requests whose path matches one of `paths` (route templates, any method) with an app
    composed on the first of them (`build`, as `LazyApp`), everything else with `app`: a root pays for routes it
    declares but rarely serves only when it serves one."""

    def __init__(self, app: ASGIApp, paths: Sequence[str], build: Callable[[], ASGIApp]) -> None:
        self.app = app
        self.rare = LazyApp(build)
        self._patterns = [compile_path(path)[0] for path in paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(pattern.match(route_path(scope)) for pattern in self._patterns):
            await self.rare(scope, receive, send)
            return
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The path below the app's root path, as Starlette routes it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path
