"""Telegram: `spec` (what the core learns, no SDK), `connector` (webhook ingest, lifecycle, send), `polling`
(the getUpdates live source for connections without a public webhook URL), `bot_api` (a small synchronous
Bot API client over httpx), `translate` (pure translations of Bot API updates), `updates` (pydantic models of
the update, which `translate` parses)."""
