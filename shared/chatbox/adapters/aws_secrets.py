"""Settings whose values live in AWS Secrets Manager, resolved once per cold start with Powertools `parameters`.

On Lambda the template passes secrets by ARN, never as plaintext environment values:
`CHATBOX_<FIELD>_SECRET_ARN` (for example `CHATBOX_VAULT_KEY_SECRET_ARN`, the setting
`vault_key_secret_arn`) names the secret holding the value of `CHATBOX_<FIELD>`. A plain value,
when present, wins, so tests and LocalStack can still pass values directly.

Example:
    settings = resolve_secret_settings(get_settings())  # one GetSecretValue per ARN still to resolve
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chatbox.domain.errors import ChatboxError
from chatbox.domain.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

SECRET_FIELDS = ("db_url", "vault_key", "vault_old_keys", "bootstrap_api_key", "metrics_token")
"""The settings that may come from Secrets Manager, each named by the setting `<field>_secret_arn`."""


class SecretError(ChatboxError):
    """A configured secret could not be read or has an unusable shape (an invocation error: fix the deployment)."""

    code = "secret_error"


def unresolved_secrets(settings: Settings) -> dict[str, str]:
    """Settings still to read from Secrets Manager: field -> ARN, for each ARN whose field has no plain value."""
    wanted = {field: str(getattr(settings, f"{field}_secret_arn")) for field in SECRET_FIELDS}
    return {field: arn for field, arn in wanted.items() if arn and not getattr(settings, field)}


def resolve_secret_settings(settings: Settings, *, provider: SecretsProvider | None = None) -> Settings:
    """A copy of `settings` with every `<field>_secret_arn` whose field is empty read from Secrets Manager.

    Args:
        provider: the Powertools provider to read with (default: `secrets_provider(settings)`, created only
            when a secret is to be read).

    Raises:
        SecretError: a secret could not be read, or a database secret is neither a URL nor RDS-style JSON.
    """
    wanted = unresolved_secrets(settings)
    if not wanted:
        return settings
    reader = provider or secrets_provider(settings)
    updates: dict[str, Any] = {}
    for field, arn in wanted.items():
        value = read_secret_string(reader, arn)
        updates[field] = database_url_from_secret(value, host=settings.db_host) if field == "db_url" else value.strip()
    return settings.model_copy(update=updates)


def secrets_provider(settings: Settings) -> SecretsProvider:
    """Powertools' Secrets Manager provider, on `CHATBOX_AWS_ENDPOINT_URL` when set (LocalStack, moto).

    Imported here: boto3 and Powertools' parameters load only when a secret is configured."""
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    client = boto3.client("secretsmanager", endpoint_url=settings.aws_endpoint_url or None)
    return SecretsProvider(boto3_client=client)


def read_secret_string(provider: SecretsProvider, arn: str) -> str:
    """The secret's `SecretString`. SecretError when it cannot be read or holds binary or nothing."""
    from aws_lambda_powertools.utilities.parameters import GetParameterError

    try:
        value = provider.get(arn)
    except GetParameterError as exc:
        raise SecretError(f"cannot read secret {arn}: {exc}") from exc
    if not isinstance(value, str) or not value:
        raise SecretError(f"secret {arn} has no SecretString")
    return value


def database_url_from_secret(value: str, *, host: str = "") -> str:
    """A database URL from a secret: either the URL itself, or the JSON an RDS-managed secret holds
    (`username`, `password`, `host`, `port`, `dbname`), which becomes a psycopg 3 URL; `host` (CHATBOX_DB_HOST,
    an RDS Proxy endpoint) replaces the secret's host there, keeping its credentials."""
    text = value.strip()
    if not text.startswith("{"):
        return text
    try:
        fields = json.loads(text)
        user, password, host = fields["username"], fields["password"], host or fields["host"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretError("the database secret is JSON but lacks username, password or host") from exc
    port = fields.get("port", 5432)
    database = fields.get("dbname") or "postgres"
    return f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}@{host}:{port}/{database}"
