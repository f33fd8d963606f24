"""Liveness with a database check, and Prometheus metrics. Neither needs auth."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from chatbox.domain import metrics
from chatbox.services.mailboxes import delivery_counts
from chatbox.web.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness plus a database check")
def health(runtime: RuntimeDep) -> JSONResponse:
    try:
        with runtime.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy", reported as 503
        return JSONResponse({"status": "unavailable", "database": f"error: {type(exc).__name__}"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics(runtime: RuntimeDep) -> Response:
    def read_depths() -> dict[str, int]:
        with runtime.db.session() as db:
            return delivery_counts(db)

    # The queue depth is read from this app's runtime, not a process global: apps in one process stay apart.
    return Response(metrics.scrape(read_depths), media_type=CONTENT_TYPE_LATEST)
