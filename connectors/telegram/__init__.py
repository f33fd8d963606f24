"""Telegram in webhook mode: `spec` (what the core learns, no SDK), `connector` (ingest, lifecycle, send over
python-telegram-bot), `translate` (pure translations of Bot API updates)."""
