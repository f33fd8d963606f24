"""The one configuration object, read from `CHATBOX_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chatbox.domain.addresses import OperatorAllowlist


class Settings(BaseSettings):
    """Every variable is documented in `.env.example` and the README."""

    model_config = SettingsConfigDict(env_prefix="CHATBOX_", env_file=".env", extra="ignore")

    home: Path = Path(".chatbox")
    db_url: str = ""
    # Connections each process keeps (0: none kept, SQLAlchemy's NullPool) and may open beyond them. A Lambda
    # instance serves one request at a time: the template sets 1 and 1, so reserved concurrency bounds them.
    db_pool_size: int = Field(default=10, ge=0, le=1000)
    db_max_overflow: int = Field(default=20, ge=0, le=1000)
    # Connect to this host instead of the one in an RDS-style database secret (an RDS Proxy endpoint).
    db_host: str = ""
    vault_key: str = ""
    vault_old_keys: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = ""
    bootstrap_api_key: str = ""
    log_level: str = "INFO"
    # /metrics counts across every account: unset, only loopback clients may scrape it (`chatbox dev` on one
    # machine); set, any client with `Authorization: Bearer <token>` may, and no one without it.
    metrics_token: str = ""
    # On Lambda, metrics go to CloudWatch (Embedded Metric Format) under this namespace.
    metrics_namespace: str = Field(default="chatbox", min_length=1, max_length=255)

    # Limits: failed-authentication throttling (chatbox.services.throttle; 0 switches a bucket off) and account quotas
    auth_failures_per_client: int = Field(default=60, ge=0)
    auth_failures_per_credential: int = Field(default=20, ge=0)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    max_mailboxes_per_account: int = Field(default=100, ge=1)
    max_credentials_per_account: int = Field(default=500, ge=1)

    # The delivery pipeline
    queue: Literal["local", "sqs"] = "local"
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_retry_base_seconds: float = Field(default=5.0, ge=0)
    delivery_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    pause_after_failures: int = Field(default=20, ge=1)
    allow_private_webhooks: bool = False
    allow_loopback_webhooks: bool = False
    # Container connectors the operator runs on private addresses: comma-separated host, host:port or CIDR.
    connector_allowed_hosts: str = ""
    # Covers a worker's run of one chat's records (see chatbox.local.consumer.records_per_chat): 3 at 15 s.
    local_queue_visibility_seconds: float = Field(default=60.0, gt=0)
    sweep_grace_seconds: float = Field(default=30.0, ge=0)
    sqs_queue_url: str = ""
    sqs_dead_letter_queue_url: str = ""
    aws_endpoint_url: str = ""

    # On Lambda, secrets come by ARN: each names the Secrets Manager secret holding the setting of the same name
    # without `_secret_arn`, read once per cold start (chatbox.adapters.aws_secrets). A plain value wins.
    db_url_secret_arn: str = ""
    vault_key_secret_arn: str = ""
    vault_old_keys_secret_arn: str = ""
    bootstrap_api_key_secret_arn: str = ""
    metrics_token_secret_arn: str = ""

    # `chatbox dev` and `chatbox api` receive every platform themselves: long polls and sockets of connections
    # that chose them, and the programs of managed Signal/Discord connections (`chatbox.local.live_host`).
    # Turn it off on every `chatbox api` but one when several serve one database.
    run_connectors: bool = True

    # The MCP servers
    mcp_allowed_hosts: str = ""
    mcp_allowed_origins: str = ""
    mcp_recap_messages: int = Field(default=20, ge=0, le=100)

    # Attachments (media both ways): the largest file chatbox relays from a platform or sends to one (never cached:
    # streamed), how long a signed attachment link in a webhook body stays valid, and the largest attachment
    # read_attachment returns inline (base64 in the MCP answer; larger ones: fetch the url).
    attachment_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    attachment_link_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)
    mcp_attachment_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1)

    # A platform's own settings (e.g. CHATBOX_TELEGRAM_API_URL) live on its spec's settings model.

    # Whether CHATBOX_PUBLIC_URL was given, rather than derived from api_host/api_port.
    _public_url_given: bool = PrivateAttr(default=False)

    @field_validator("connector_allowed_hosts")
    @classmethod
    def _check_connector_allowed_hosts(cls, value: str) -> str:
        OperatorAllowlist.parse(value)  # a ValueError names the bad entry, at startup rather than at a send
        return value

    @property
    def connector_allowlist(self) -> OperatorAllowlist:
        """CHATBOX_CONNECTOR_ALLOWED_HOSTS, parsed."""
        return OperatorAllowlist.parse(self.connector_allowed_hosts)

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        if not self.db_url and not self.db_url_secret_arn:  # with an ARN, the secret fills it in
            self.db_url = f"sqlite:///{self.home / 'chatbox.db'}"
        self._public_url_given = bool(self.public_url)
        if not self.public_url:
            self.public_url = f"http://{self.api_host}:{self.api_port}"
        self.public_url = self.public_url.rstrip("/")
        return self

    def adopt_serving_domain(self, domain: str) -> None:
        """Serve at `https://<domain>` when CHATBOX_PUBLIC_URL is unset: what a first deploy behind API Gateway
        does (the template cannot name the API's own domain to its functions without a cycle). The domain must
        come from the platform serving the request (API Gateway's request context), never from a client's
        Host header. The first domain adopted stays; a configured CHATBOX_PUBLIC_URL always wins."""
        if self._public_url_given or not domain:
            return
        self.public_url = f"https://{domain}"
        self._public_url_given = True

    @property
    def vault_key_file(self) -> Path:
        """Where `chatbox dev` keeps a generated vault key when `CHATBOX_VAULT_KEY` is unset."""
        return self.home / "vault.key"

    def mcp_hosts(self) -> list[str]:
        """Host header values the MCP endpoints accept: CHATBOX_PUBLIC_URL's host, loopback, and
        CHATBOX_MCP_ALLOWED_HOSTS (comma-separated; `name:*` allows any port)."""
        public = urlsplit(self.public_url)
        hosts = [public.netloc, f"{self.api_host}:{self.api_port}", "127.0.0.1:*", "localhost:*", "[::1]:*"]
        if public.hostname and public.port is None:
            hosts.append(f"{public.hostname}:{443 if public.scheme == 'https' else 80}")
        return _dedupe(hosts + _split(self.mcp_allowed_hosts))

    def mcp_origins(self) -> list[str]:
        """Origin header values the MCP endpoints accept (requests without Origin are not browsers and pass):
        CHATBOX_PUBLIC_URL's origin, loopback origins, and CHATBOX_MCP_ALLOWED_ORIGINS (comma-separated)."""
        public = urlsplit(self.public_url)
        origins = [f"{public.scheme}://{public.netloc}", "http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
        return _dedupe(origins + _split(self.mcp_allowed_origins))

    def mcp_url(self, mailbox_id: str) -> str:
        return f"{self.public_url}/mcp/{mailbox_id}"

    def secret_values(self) -> list[str]:
        """The values of the secret settings: the vault keys, the bootstrap API key, the database password
        (for `chatbox.domain.redaction.register_secrets`, which keeps them out of every log line)."""
        values = [self.vault_key, *_split(self.vault_old_keys), self.bootstrap_api_key]
        try:
            password = urlsplit(self.db_url).password
        except ValueError:  # not a URL: the database layer reports it
            password = None
        if password:
            values += [password, unquote(password)]
        return [value.strip() for value in values if value.strip()]


class DevSettings(Settings):
    """`chatbox dev`'s settings (and its worker's): the same variables, with the defaults of one machine.

    Loopback webhook targets are allowed unless `CHATBOX_ALLOW_LOOPBACK_WEBHOOKS` (environment or `.env`)
    says otherwise: on one machine the agent harness usually listens on localhost.
    """

    allow_loopback_webhooks: bool = True


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
