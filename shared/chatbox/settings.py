"""The one configuration object, read from `CHATBOX_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every variable is documented in `.env.example` and the README."""

    model_config = SettingsConfigDict(env_prefix="CHATBOX_", env_file=".env", extra="ignore")

    home: Path = Path(".chatbox")
    db_url: str = ""
    vault_key: str = ""
    vault_old_keys: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    bootstrap_api_key: str = ""
    log_level: str = "INFO"

    # The delivery pipeline
    queue: Literal["local", "sqs"] = "local"
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_retry_base_seconds: float = Field(default=5.0, ge=0)
    delivery_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    pause_after_failures: int = Field(default=20, ge=1)
    allow_private_webhooks: bool = False
    allow_loopback_webhooks: bool = False
    local_queue_visibility_seconds: float = Field(default=30.0, gt=0)
    sweep_grace_seconds: float = Field(default=30.0, ge=0)
    sqs_queue_url: str = ""
    sqs_dead_letter_queue_url: str = ""
    aws_endpoint_url: str = ""

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        if not self.db_url:
            self.db_url = f"sqlite:///{self.home / 'chatbox.db'}"
        if not self.public_url:
            self.public_url = f"http://{self.api_host}:{self.api_port}"
        self.public_url = self.public_url.rstrip("/")
        return self

    @property
    def vault_key_file(self) -> Path:
        """Where `chatbox dev` keeps a generated vault key when `CHATBOX_VAULT_KEY` is unset."""
        return self.home / "vault.key"

    def mcp_url(self, mailbox_id: str) -> str:
        return f"{self.public_url}/mcp/{mailbox_id}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
