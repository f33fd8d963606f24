"""Serving helpers for `chatbox api` and `chatbox dev` (uvicorn is imported only here)."""

from __future__ import annotations

import uvicorn

from chatbox.runtime import Runtime
from chatbox.services import accounts
from chatbox.store.migrate import upgrade_to_head
from chatbox.web.app import create_app


def prepare_dev_home(runtime: Runtime) -> accounts.IssuedKey | None:
    """Migrate and, on first start, create the first account. Returns the new key, or None if one existed."""
    upgrade_to_head(runtime.db.engine)
    with runtime.db.session() as db:
        return accounts.bootstrap(db, api_key=runtime.settings.bootstrap_api_key or None)


def serve(runtime: Runtime) -> None:
    settings = runtime.settings
    uvicorn.run(
        create_app(runtime),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )
