"""Every REST router, in the order `chatbox dev` and `chatbox api` serve them: the management API's, then the ingest
routes (the api function serves the first and hands the second on, see `functions/api/handler.py`)."""

from __future__ import annotations

from fastapi import APIRouter

from chatbox.web.management_routers import MANAGEMENT_ROUTERS
from chatbox.web.routes import inbound, ingest

API_ROUTERS: tuple[APIRouter, ...] = (*MANAGEMENT_ROUTERS, inbound.router, ingest.router)
