"""Settings whose values live in AWS Secrets Manager, resolved once per cold start.

On Lambda the template passes secrets by ARN, never as plaintext environment values:
`CHATBOX_<FIELD>_SECRET_ARN` (for example `CHATBOX_VAULT_KEY_SECRET_ARN`) names the secret holding
the value of `CHATBOX_<FIELD>`. A plain environment value, when present, wins, so tests and
LocalStack can still pass values directly.

Example:
    settings = resolve_secret_settings(get_settings())  # one GetSecretValue per configured ARN
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from chatbox.domain.errors import ChatboxError
from chatbox.domain.settings import Settings

SECRET_FIELDS = ("db_url", "vault_key", "vault_old_keys", "bootstrap_api_key")
"""The settings that may come from Secrets Manager."""

SecretReader = Callable[[str], str]


class SecretError(ChatboxError):
    """A configured secret could not be read or has an unusable shape (an invocation error: fix the deployment)."""

    code = "secret_error"


def secret_arn_variable(field: str) -> str:
    """The variable naming the secret for a settings field: `vault_key` -> `CHATBOX_VAULT_KEY_SECRET_ARN`."""
    return f"CHATBOX_{field.upper()}_SECRET_ARN"


def resolve_secret_settings(
    settings: Settings, *, environ: Mapping[str, str] | None = None, read_secret: SecretReader | None = None
) -> Settings:
    """A copy of `settings` with every `CHATBOX_<FIELD>_SECRET_ARN` read from Secrets Manager.

    Args:
        environ: where to look for the ARN variables (default `os.environ`).
        read_secret: ARN -> secret string (default: Secrets Manager through boto3, created only if needed).

    Raises:
        SecretError: a secret could not be read, or a database secret is neither a URL nor RDS-style JSON.
    """
    env = os.environ if environ is None else environ
    wanted = {
        field: env[secret_arn_variable(field)]
        for field in SECRET_FIELDS
        if env.get(secret_arn_variable(field)) and not env.get(f"CHATBOX_{field.upper()}")
    }
    if not wanted:
        return settings
    reader = read_secret or secrets_manager_reader()
    updates: dict[str, Any] = {}
    for field, arn in wanted.items():
        value = reader(arn)
        updates[field] = database_url_from_secret(value) if field == "db_url" else value.strip()
    return settings.model_copy(update=updates)


def database_url_from_secret(value: str) -> str:
    """A database URL from a secret: either the URL itself, or the JSON an RDS-managed secret holds
    (`username`, `password`, `host`, `port`, `dbname`), which becomes a psycopg 3 URL."""
    text = value.strip()
    if not text.startswith("{"):
        return text
    try:
        fields = json.loads(text)
        user, password, host = fields["username"], fields["password"], fields["host"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SecretError("the database secret is JSON but lacks username, password or host") from exc
    port = fields.get("port", 5432)
    database = fields.get("dbname") or "postgres"
    return f"postgresql+psycopg://{quote(str(user), safe='')}:{quote(str(password), safe='')}@{host}:{port}/{database}"


def secrets_manager_reader() -> SecretReader:
    """Reads `SecretString` with one boto3 Secrets Manager client (imported here: only when a secret is configured)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("secretsmanager", endpoint_url=os.environ.get("CHATBOX_AWS_ENDPOINT_URL") or None)

    def read(arn: str) -> str:
        try:
            response = client.get_secret_value(SecretId=arn)
        except (BotoCoreError, ClientError) as exc:
            raise SecretError(f"cannot read secret {arn}: {exc}") from exc
        secret = str(response.get("SecretString") or "")
        if not secret:
            raise SecretError(f"secret {arn} has no SecretString")
        return secret

    return read
