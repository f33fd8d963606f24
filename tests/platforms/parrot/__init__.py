"""Parrot: a throwaway container platform whose program follows the contract (`connectors/CONTRACT.md`) with the
standard library only, so the live host's supervision is tested without Signal or Discord.

`python -m tests.platforms.parrot` serves `GET /healthz` and `POST /v1/send` (bearer `CHATBOX_OUTBOUND_AUTH`) on
`CONNECTOR_HOST:CONNECTOR_PORT`, and on start posts one inbound message, "<PARROT_GREETING> from pid <pid>", with
`CHATBOX_INBOUND_TOKEN`. It writes what it was sent to `CONNECTOR_STATE_DIR/sent.jsonl`, prints one line with its
outbound bearer in it (chatbox's log must show it redacted), and exits 0 on SIGTERM.
"""
