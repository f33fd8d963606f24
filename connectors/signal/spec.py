"""Signal's platform spec: a container connector (signal-cli) that talks to chatbox over HTTP."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chatbox.domain.errors import InvalidInputError
from chatbox.ports.connector import OUTBOUND_CREDENTIAL, OUTBOUND_URL, ConnectionContext
from chatbox.ports.platforms import ConnectionField, ConnectorProgram, PlatformMode, PlatformSpec

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
DEFAULT_SIGNAL_CLI_URL = "http://127.0.0.1:7583"


def _check_program_input(config: Mapping[str, Any], _secrets: Mapping[str, str]) -> None:
    account = config.get("account")
    if not isinstance(account, str) or not E164.match(account):
        raise InvalidInputError(
            "config.account must be the Signal number signal-cli registered or linked, in E.164 form (+4915112345678)"
        )
    url = config.get("signal_cli_url", DEFAULT_SIGNAL_CLI_URL)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInputError("config.signal_cli_url must be signal-cli's HTTP daemon, e.g. http://127.0.0.1:7583")


def _program_env(ctx: ConnectionContext) -> dict[str, str]:
    env = {
        "SIGNAL_ACCOUNT": str(ctx.config.get("account", "")),
        "SIGNAL_CLI_URL": str(ctx.config.get("signal_cli_url", DEFAULT_SIGNAL_CLI_URL)),
    }
    if isinstance(ctx.config.get("attachments_dir"), str):
        env["SIGNAL_ATTACHMENTS_DIR"] = ctx.config["attachments_dir"]
    return env


SPEC = PlatformSpec(
    name="signal",
    label="Signal",
    mode=PlatformMode.container,
    summary="Signal through a signal-cli container: it posts inbound to the connection's ingest_url with the "
    "inbound token, and chatbox sends through its outbound_url (connectors/CONTRACT.md). Without outbound_url, "
    "chatbox dev/api runs the program itself against signal-cli's HTTP daemon.",
    send_notes="reply_to is a message id as the webhook shows it (`<author>:<timestamp>`); "
    "in a direct chat a bare timestamp works too.",
    config=(
        ConnectionField(
            "account", "the Signal number signal-cli registered or linked, E.164 (needed when chatbox runs it)", False
        ),
        ConnectionField(
            "signal_cli_url", f"signal-cli's `daemon --http` address (default {DEFAULT_SIGNAL_CLI_URL})", False
        ),
        ConnectionField(
            "attachments_dir",
            "signal-cli's attachment store, `<its --config>/attachments` (default /var/lib/signal-cli/attachments), "
            "read to serve inbound attachments when chatbox runs the program",
            False,
        ),
        ConnectionField(OUTBOUND_URL, "the connector's send URL, e.g. http://signal-connector:8080/v1/send", False),
        ConnectionField(OUTBOUND_CREDENTIAL, "an mcp_proxy_auth credential chatbox presents to the connector", False),
    ),
    program=ConnectorProgram("connectors.signal", env=_program_env, check_input=_check_program_input),
)
