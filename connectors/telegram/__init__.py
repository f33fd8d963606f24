"""Telegram in webhook mode: `spec` (what the core learns, no SDK), `connector` (ingest, lifecycle, send),
`bot_api` (a small synchronous Bot API client over httpx), `translate` (pure translations of Bot API updates,
parsed with python-telegram-bot)."""
