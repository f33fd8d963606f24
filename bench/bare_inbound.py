"""The baseline for the inbound benchmark: a bare FastAPI endpoint that only parses the body and answers 202.

It parses with chatbox's own `InboundMessage`, on the same path as the real route, so the gap between
the two measures what chatbox adds (authentication, the database, the queue), not HTTP or pydantic.
Served by `bench/pipeline.py` as `uvicorn bare_inbound:app --app-dir bench`.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

from chatbox.domain.normalized import InboundMessage

app = FastAPI(title="bare inbound baseline")


@app.post("/v1/connections/{connection_id}/messages", status_code=202)
async def accept_bare(connection_id: str, body: InboundMessage) -> Response:  # noqa: ARG001 - the same path shape
    return Response(status_code=202)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
