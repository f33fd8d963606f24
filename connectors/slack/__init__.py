"""Slack: `spec` (what the core learns, no SDK), `connector` (Events API ingest, lifecycle, send over
slack-sdk), `socket_mode` (the Socket Mode live source for connections without a public URL), `translate`
(pure translations of Events API envelopes, which Socket Mode carries too)."""
