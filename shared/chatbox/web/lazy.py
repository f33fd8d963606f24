"""An ASGI app composed on its first request, for a root whose cold start should not pay for one it may not need."""

from __future__ import annotations

from collections.abc import Callable

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
