"""Liveness with a database check, and Prometheus metrics. Neither needs auth."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from chatbox.domain import metrics
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
def prometheus_metrics() -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
