"""The baseline for the Telegram ingest benchmark: a bare FastAPI endpoint that checks the secret token
header in constant time, parses the update with a pydantic model of it, and answers 200.

Same path shape as chatbox's ingest route, so the gap between the two measures what chatbox adds
(the connection lookup, normalization, the durable accept), not HTTP or JSON parsing.
Served by `bench/telegram_ingest.py` as `uvicorn bare_telegram:app --app-dir bench`, with the secret
in BENCH_TELEGRAM_SECRET.
"""

from __future__ import annotations

import hmac
import os

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field

app = FastAPI(title="bare telegram webhook baseline")
SECRET = os.environ.get("BENCH_TELEGRAM_SECRET", "").encode()


class _User(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None


class _Chat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    type: str
    title: str | None = None
    username: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    message_id: int
    date: int
    chat: _Chat
    sender: _User | None = Field(default=None, alias="from")
    text: str | None = None


class _Update(BaseModel):
    model_config = ConfigDict(extra="ignore")
    update_id: int
    message: _Message | None = None


@app.post("/v1/ingest/telegram/{connection_id}")
async def take_update(connection_id: str, request: Request) -> Response:  # noqa: ARG001 - the same path shape
    presented = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
    if not hmac.compare_digest(presented, SECRET):
        return Response(status_code=403)
    _Update.model_validate_json(await request.body())
    return Response(b'{"ok":true}', media_type="application/json")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
