"""The baseline for the Telegram ingest benchmark: a bare FastAPI endpoint that checks the secret token
header in constant time, parses the update with python-telegram-bot's `Update.de_json`, and answers 200.

Same path shape as chatbox's ingest route, so the gap between the two measures what chatbox adds
(the connection lookup, normalization, the durable accept), not HTTP or PTB's parsing.
Served by `bench/telegram_ingest.py` as `uvicorn bare_telegram:app --app-dir bench`, with the secret
in BENCH_TELEGRAM_SECRET.
"""

from __future__ import annotations

import hmac
import json
import os

from fastapi import FastAPI, Request, Response
from telegram import Update

app = FastAPI(title="bare telegram webhook baseline")
SECRET = os.environ.get("BENCH_TELEGRAM_SECRET", "").encode()


@app.post("/v1/ingest/telegram/{connection_id}")
async def take_update(connection_id: str, request: Request) -> Response:  # noqa: ARG001 - the same path shape
    presented = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
    if not hmac.compare_digest(presented, SECRET):
        return Response(status_code=403)
    Update.de_json(json.loads(await request.body()), None)
    return Response(b'{"ok":true}', media_type="application/json")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
