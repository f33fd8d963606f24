"""The Signal program's environment: the relay's variables plus the signal-cli account and daemon URL."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from connectors.relay.settings import RelaySettings


class SignalSettings(RelaySettings):
    signal_account: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="the account's number, +E164")
    signal_cli_url: str = Field(description="signal-cli's `daemon --http` address, e.g. http://127.0.0.1:7583")
    # Where the daemon saves received attachments (`<--config>/attachments`), served by GET /v1/attachments/{id}.
    signal_attachments_dir: Path = Field(
        default=Path("/var/lib/signal-cli/attachments"), description="signal-cli's attachment store"
    )

    @field_validator("signal_cli_url")
    @classmethod
    def _cli_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < len("http://x"):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")
