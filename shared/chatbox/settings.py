"""The one configuration object, read from `CHATBOX_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
