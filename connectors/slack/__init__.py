"""Slack through the Events API: `spec` (what the core learns, no SDK), `connector` (ingest, lifecycle, send over
slack-sdk), `translate` (pure translations of Events API envelopes)."""
